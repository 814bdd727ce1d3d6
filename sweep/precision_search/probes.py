"""The ranked search's evaluations, for real: typed ONNX from ModelOpt, emulated engines
through the engine cache, and streaming through ONNX Runtime in-process (the same
chunking, state round-trip, features and decoder as a sweep job; see cli.py for why a
probe does not start Triton).

* ``baseline``: the flag set in fp32 on the full test set; its per-frame log-probabilities
  are the reference every other evaluation is compared with (kept beside the history, so
  a resumed search need not stream fp32 again).
* ``full(keeps)``: the typed flag set with ``keeps`` as FP32 keeps, realised by ModelOpt
  exactly as a sweep job realises it, built and streamed over the full test set.
* ``subset(keeps, revert, subset)``: the realised model of ``keeps`` with ``revert`` put
  back in float by graph surgery (``qdq.revert``), streamed over the ranking subset only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from sweep.data.manifest import Utterance
from sweep.engine import Engine
from sweep.flags import FlagSet
from sweep.model import ModelInterface
from sweep.precision.realise import TypedModel
from sweep.precision_search import qdq, ranking
from sweep.precision_search.ranked import FullEval, SubsetEval

Decode = Callable[[np.ndarray], str]


def keep_flags(base: FlagSet, keeps: Sequence[str]) -> FlagSet:
    """The typed flag set with ``keeps`` (node names) kept in FP32: what the preset holds."""
    flags = replace(base, layer_precisions=tuple((n, "fp32") for n in keeps))
    flags.validate()
    return flags


class StreamingProbes:
    def __init__(self, model: ModelInterface, utterances: list[Utterance], decode: Decode,
                 base: FlagSet, realise: Callable[[FlagSet], TypedModel],
                 build: Callable[[Path, FlagSet], Engine], record: Path, *,
                 build_variant: Callable[[Path, FlagSet, Path], Engine] | None = None,
                 threads: int = 1, fp16_features: bool = False) -> None:
        self.model = model
        self.utterances = utterances
        self.references = [u.text for u in utterances]
        self.decode = decode
        self.base = base
        self.realise = realise
        self.build = build
        # Variants go through the same emulation as the probes (TF32 rounding of float
        # matmuls when trt.tf32 is on): scored without it, a group put back in float
        # looked better or worse against the TF32-emulated fp32 reference than the full
        # probe of the same flag set then measured.
        self.build_variant = build_variant
        # Beside the search's record, named after it: fp32's log-probabilities
        # (<record>.fp32.npz) and the ranking's scratch (<record>.variant/).
        self.record = record
        self.threads = threads
        self.fp16_features = fp16_features
        self._reference: list[np.ndarray] | None = None
        self._loaded: tuple[str, onnx.ModelProto] | None = None

    # -- streaming -----------------------------------------------------------------------

    def _stream(self, path: Path, level: str, indices: Sequence[int] | None = None
                ) -> list[np.ndarray]:
        from sweep.evaluate.reference import OrtPipeline

        chosen = self.utterances if indices is None else [self.utterances[i] for i in indices]
        run = OrtPipeline(self.model, path, graph_optimization_level=level,
                          threads=self.threads, fp16_features=self.fp16_features).run(chosen)
        return [np.asarray(r.logprobs) for r in run.results]

    def _engine_stream(self, engine: Engine) -> list[np.ndarray]:
        level = engine.runtime.get("graph_optimization_level", "ORT_ENABLE_ALL")
        return self._stream(engine.path, level)

    @property
    def _reference_path(self) -> Path:
        return self.record.with_name(f"{self.record.stem}.fp32.npz")

    @property
    def scratch(self) -> Path:
        return self.record.with_name(f"{self.record.stem}.variant")

    def reference(self) -> list[np.ndarray]:
        """fp32's log-probabilities per utterance (streamed once, then read back)."""
        if self._reference is None:
            path = self._reference_path
            if path.is_file():
                with np.load(path) as data:
                    self._reference = [data[f"u{i}"] for i in range(len(self.utterances))]
            else:
                self.baseline()
        assert self._reference is not None
        return self._reference

    def _score(self, logprobs: list[np.ndarray], seconds: float) -> FullEval:
        from sweep.evaluate.metrics import score

        hypotheses = [self.decode(lp) for lp in logprobs]
        scores = score(self.references, hypotheses)
        reference = self._reference if self._reference is not None else logprobs
        counts = ranking.frame_flip_counts(reference, logprobs)
        frames = sum(max(len(a), len(b)) for a, b in zip(reference, logprobs, strict=True))
        return FullEval(scores.wer, scores.cer, sum(counts) / frames if frames else 0.0,
                        ranking.frame_kl(reference, logprobs), hypotheses, counts, seconds)

    # -- the three evaluations -----------------------------------------------------------

    def baseline_flags(self) -> FlagSet:
        return replace(self.base, precision="fp32", strongly_typed=False,
                       layer_precisions=(), precision_constraints="none")

    def baseline(self) -> FullEval:
        t0 = time.perf_counter()
        logprobs = self._engine_stream(self.build(self.model.onnx_path, self.baseline_flags()))
        self._reference = logprobs
        self.record.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._reference_path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"u{i}": lp for i, lp in enumerate(logprobs)})
        tmp.replace(self._reference_path)
        return self._score(logprobs, time.perf_counter() - t0)

    def full(self, keeps: tuple[str, ...]) -> FullEval:
        self.reference()
        t0 = time.perf_counter()
        flags = keep_flags(self.base, keeps)
        typed = self.realise(flags)
        logprobs = self._engine_stream(self.build(typed.path, flags))
        return self._score(logprobs, time.perf_counter() - t0)

    def _typed_model(self, keeps: tuple[str, ...]) -> onnx.ModelProto:
        typed = self.realise(keep_flags(self.base, keeps))
        if self._loaded is None or self._loaded[0] != typed.digest:
            self._loaded = (typed.digest, onnx.load(str(typed.path)))
        return self._loaded[1]

    def subset(self, keeps: tuple[str, ...], revert: tuple[str, ...],
               subset: Sequence[int]) -> SubsetEval:
        from sweep.builder.emulate import ort_level

        reference = self.reference()
        t0 = time.perf_counter()
        variant, rewired = qdq.revert(self._typed_model(keeps), revert)
        if revert and not rewired:
            return SubsetEval(float("inf"), 0, 0, time.perf_counter() - t0)
        folder = self.scratch
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "typed.onnx"
        onnx.save(variant, str(path))
        if self.build_variant is not None:
            engine = self.build_variant(path, keep_flags(self.base, (*keeps, *revert)),
                                        folder / "engine")
            logprobs = self._stream(engine.path, engine.runtime.get(
                "graph_optimization_level", ort_level(self.base.opt_level)), subset)
        else:
            logprobs = self._stream(path, ort_level(self.base.opt_level), subset)
        chosen = [reference[i] for i in subset]
        return SubsetEval(ranking.frame_kl(chosen, logprobs),
                          sum(ranking.frame_flip_counts(chosen, logprobs)), rewired,
                          time.perf_counter() - t0)
