"""CTC decoders (greedy; pyctcdecode beam search with KenLM) and a process pool that
decodes finished utterances off the streaming path.

Beam search with a language model costs tens to hundreds of milliseconds per utterance of
pure Python; done inside the streaming client's event loop it would stall every stream
(latency figures would include it) and done after streaming it adds its whole time to the
job. :class:`DecodePool` takes each utterance's log-probabilities the moment its last
chunk has come back (``GrpcStreamer.run(on_done=...)``) and decodes them in worker
processes while the other streams go on.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sweep.data.text import BLANK_ID, VOCABULARY
from sweep.errors import ConfigError, EvaluationError

DECODERS = ("greedy", "beam")


class Decoder(Protocol):
    name: str

    def decode(self, logprobs: np.ndarray) -> str:
        """Text of one utterance's (frames, classes) log-probabilities."""
        ...


def collapse(ids: np.ndarray, blank_id: int = BLANK_ID) -> list[int]:
    """CTC best path: merge repeats, then drop blanks."""
    if ids.size == 0:
        return []
    keep = np.ones(ids.shape, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return [int(i) for i in ids[keep] if i != blank_id]


def labels(vocabulary: tuple[str, ...] = VOCABULARY, blank_id: int = BLANK_ID) -> list[str]:
    """The model's output classes in order: the alphabet with "" at the blank's index
    (``model.blank_id``; T-one's is the last, 34)."""
    if not 0 <= blank_id <= len(vocabulary):
        raise ConfigError(f"model.blank_id={blank_id}; expected 0..{len(vocabulary)} for an "
                          f"alphabet of {len(vocabulary)} labels plus the blank.")
    out = list(vocabulary)
    out.insert(blank_id, "")
    return out


def _check_logprobs(logprobs: np.ndarray, classes: int) -> np.ndarray:
    array = np.asarray(logprobs)
    if array.ndim != 2 or array.shape[1] != classes:
        raise EvaluationError(
            f"expected (frames, {classes}) log-probabilities (the alphabet plus the blank), "
            f"got shape {array.shape}; check model.logprobs_output and the model's alphabet.")
    return array


class GreedyDecoder:
    name = "greedy"

    def __init__(self, vocabulary: tuple[str, ...] = VOCABULARY, blank_id: int = BLANK_ID
                 ) -> None:
        self.labels = labels(vocabulary, blank_id)
        self.blank_id = blank_id

    def decode(self, logprobs: np.ndarray) -> str:
        array = _check_logprobs(logprobs, len(self.labels))
        ids = collapse(array.argmax(axis=-1), self.blank_id)
        return " ".join("".join(self.labels[i] for i in ids).split())


class BeamDecoder:
    """pyctcdecode beam search with a KenLM model (the seed's width 200, alpha 0.4, beta 0.9).

    ``kenlm_path`` may be an ARPA file (pyctcdecode then also reads its unigram list, which
    it needs to score partial words) or a KenLM binary, in which case pass ``unigrams`` or
    accept pyctcdecode's warning that partial words go unscored. ``None`` decodes without
    a language model (beam search over the acoustic scores only).
    """

    name = "beam"

    def __init__(self, kenlm_path: str | Path | None, beam_width: int = 200, alpha: float = 0.4,
                 beta: float = 0.9, vocabulary: tuple[str, ...] = VOCABULARY,
                 blank_id: int = BLANK_ID, *,
                 unigrams: list[str] | None = None, beam_prune_logp: float = -10.0,
                 token_min_logp: float = -5.0) -> None:
        from pyctcdecode import build_ctcdecoder

        if kenlm_path is not None and not Path(kenlm_path).is_file():
            raise ConfigError(f"decoder.kenlm_path={kenlm_path} does not exist; expected an "
                              "ARPA or KenLM binary model (the demo's: demo/assets/lm_3gram.arpa).")
        if beam_width < 1:
            raise ConfigError(f"decoder.beam_width={beam_width}; expected at least 1.")
        # pyctcdecode wants "" for the blank, at the blank's index.
        classes = labels(vocabulary, blank_id)
        self.classes = len(classes)
        self.beam_width = beam_width
        self.beam_prune_logp = beam_prune_logp
        self.token_min_logp = token_min_logp
        try:
            self._decoder = build_ctcdecoder(
                classes, kenlm_model_path=str(kenlm_path) if kenlm_path else None,
                unigrams=unigrams, alpha=alpha, beta=beta)
        except Exception as exc:  # kenlm raises OSError/RuntimeError with its own wording
            raise ConfigError(f"decoder.kenlm_path={kenlm_path} cannot be loaded by KenLM "
                              f"({type(exc).__name__}: {exc}); expected an ARPA or KenLM "
                              "binary model.") from exc

    def decode(self, logprobs: np.ndarray) -> str:
        array = _check_logprobs(logprobs, self.classes)
        if array.shape[0] == 0:
            return ""
        text = self._decoder.decode(np.ascontiguousarray(array, dtype=np.float32),
                                    beam_width=self.beam_width,
                                    beam_prune_logp=self.beam_prune_logp,
                                    token_min_logp=self.token_min_logp)
        return " ".join(text.split())



@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder is made of: plain data, so it can be sent to worker processes."""

    name: str = "greedy"
    kenlm_path: str | None = None
    beam_width: int = 200
    alpha: float = 0.4
    beta: float = 0.9
    blank_id: int = BLANK_ID  # the model's (model.blank_id)

    def __post_init__(self) -> None:
        if self.name not in DECODERS:
            raise ConfigError(f"decoder={self.name!r} is unknown; expected greedy or beam.")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any],
                    resolve: Callable[[str], Path] | None = None,
                    blank_id: int = BLANK_ID) -> DecoderSpec:
        """From the ``decoder`` config group; ``resolve`` turns a configured path into a
        file (the sweep's ``project_path``)."""
        path = cfg.get("kenlm_path")
        if path and resolve is not None:
            path = str(resolve(path))
        return cls(name=str(cfg.get("name", "greedy")), kenlm_path=path or None,
                   beam_width=int(cfg.get("beam_width", 200)),
                   alpha=float(cfg.get("alpha", 0.4)), beta=float(cfg.get("beta", 0.9)),
                   blank_id=blank_id)

    def build(self) -> Decoder:
        if self.name == "greedy":
            return GreedyDecoder(blank_id=self.blank_id)
        return BeamDecoder(self.kenlm_path, beam_width=self.beam_width, alpha=self.alpha,
                           beta=self.beta, blank_id=self.blank_id)


# Messages from a worker: ("ready", pid, build_seconds) | ("error", id_or_None, text)
# | ("done", id, text, decode_seconds).
def _worker(spec: DecoderSpec, tasks: Any, results: Any, nice: int) -> None:
    if nice:
        # Decoding must not steal CPU from the server and client whose latency is being
        # measured on the same host; lower priority lets them go first.
        with contextlib.suppress(OSError):
            os.nice(nice)
    t0 = time.perf_counter()
    try:
        decoder = spec.build()
    except Exception as exc:
        results.put(("error", None, f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", os.getpid(), time.perf_counter() - t0))
    while True:
        task = tasks.get()
        if task is None:
            return
        utterance_id, logprobs = task
        t1 = time.perf_counter()
        try:
            text = decoder.decode(logprobs)
        except Exception as exc:
            results.put(("error", utterance_id, f"{type(exc).__name__}: {exc}"))
            continue
        results.put(("done", utterance_id, text, time.perf_counter() - t1))


class DecodePool:
    """Decode utterances in ``workers`` processes while streaming goes on.

    ``with DecodePool(spec, workers) as pool: ... pool.submit(id, logprobs) ...;
    texts = pool.results()``. Each worker builds its decoder once (loading a KenLM model
    is slow) before ``__enter__`` returns, so that cost is never inside a measured
    stream. ``workers=0`` decodes in the calling thread at ``submit`` (right for greedy,
    which takes well under a millisecond per utterance).

    Workers are started with ``spawn``: the parent may already hold gRPC channels and
    their threads, which must not be forked. Like every ``spawn`` user, the program's
    main module must be safe to import (``if __name__ == "__main__":``), as
    ``python -m sweep`` and ``python -m sweep.doctor`` are.
    """

    def __init__(self, spec: DecoderSpec, workers: int = 2, *, nice: int = 5,
                 ready_timeout_s: float = 300.0, start_method: str = "spawn") -> None:
        if workers < 0:
            raise ConfigError(f"decoder.workers={workers}; expected 0 (in-process) or more.")
        self.spec = spec
        self.workers = workers
        self.nice = nice
        self.ready_timeout_s = ready_timeout_s
        self._context: Any = mp.get_context(start_method)
        self._processes: list[Any] = []
        self._tasks: Any = None
        self._results: Any = None
        self._inline: Decoder | None = None
        self._texts: dict[str, str] = {}
        self._seconds: dict[str, float] = {}
        self._order: list[str] = []
        self._errors: list[str] = []
        self._open = False
        self.build_seconds: float = 0.0

    def __enter__(self) -> DecodePool:
        t0 = time.perf_counter()
        if self.workers == 0:
            self._inline = self.spec.build()
        else:
            self._start()
        self.build_seconds = time.perf_counter() - t0
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._tasks = self._context.Queue()
        self._results = self._context.Queue()
        for _ in range(self.workers):
            process = self._context.Process(
                target=_worker, args=(self.spec, self._tasks, self._results, self.nice),
                daemon=True)
            process.start()
            self._processes.append(process)
        ready = 0
        deadline = time.monotonic() + self.ready_timeout_s
        try:
            while ready < self.workers:
                message = self._next_message(deadline, "to build its decoder")
                if message[0] == "error":
                    raise EvaluationError(f"a decode worker could not build the {self.spec.name} "
                                          f"decoder: {message[2]}")
                ready += 1
        except BaseException:
            self.close()
            raise

    def _next_message(self, deadline: float, waiting_for: str) -> tuple[Any, ...]:
        while True:
            try:
                return tuple(self._results.get(timeout=0.2))
            except queue.Empty:
                pass
            dead = [p for p in self._processes if not p.is_alive() and p.exitcode != 0]
            if dead:
                raise EvaluationError(
                    f"a decode worker (pid {dead[0].pid}) died with exit code "
                    f"{dead[0].exitcode} while waiting {waiting_for}; out of memory?")
            if time.monotonic() > deadline:
                raise EvaluationError(f"decode workers took longer than the deadline "
                                      f"{waiting_for}.")

    def submit(self, utterance_id: str, logprobs: np.ndarray) -> None:
        """Queue one finished utterance; returns at once (pickling happens in a feeder
        thread), so it is safe to call from the streaming client's event loop."""
        if not self._open:
            raise EvaluationError("DecodePool.submit outside its with-block.")
        if utterance_id in self._texts or utterance_id in self._order:
            raise EvaluationError(f"utterance {utterance_id!r} was submitted twice.")
        self._order.append(utterance_id)
        if self._inline is not None:
            t0 = time.perf_counter()
            self._texts[utterance_id] = self._inline.decode(logprobs)
            self._seconds[utterance_id] = time.perf_counter() - t0
            return
        self._tasks.put((utterance_id, np.ascontiguousarray(logprobs, dtype=np.float32)))

    def results(self, timeout_s: float | None = None) -> dict[str, str]:
        """Every submitted utterance's text, in submission order; waits for the rest."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else 1e9)
        while self._processes and len(self._texts) + len(self._errors) < len(self._order):
            message = self._next_message(deadline, "for decoded utterances")
            if message[0] == "done":
                self._texts[message[1]] = message[2]
                self._seconds[message[1]] = message[3]
            elif message[0] == "error":
                self._errors.append(f"{message[1]}: {message[2]}")
        if self._errors:
            raise EvaluationError(f"decoding failed for {len(self._errors)} utterance(s): "
                                  + "; ".join(self._errors[:3]))
        return {uid: self._texts[uid] for uid in self._order}

    @property
    def seconds(self) -> dict[str, float]:
        """Decode time of each finished utterance, measured inside its worker."""
        return dict(self._seconds)

    def close(self) -> None:
        self._open = False
        if not self._processes:
            return
        for _ in self._processes:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                break
        for process in self._processes:
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()
        self._processes = []


def decode_all(spec: DecoderSpec, logprobs: Mapping[str, np.ndarray], workers: int = 0
               ) -> dict[str, str]:
    """Decode a finished set at once (the doctor and the benchmarks use this)."""
    with DecodePool(spec, workers) as pool:
        for uid, array in logprobs.items():
            pool.submit(uid, array)
        return pool.results()
