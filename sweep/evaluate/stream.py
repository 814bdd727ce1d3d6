"""The streaming client: every utterance chunk by chunk, its state round-tripped, N at once.

Chunking is written once (``chunk_inputs``) and shared by the gRPC client, the in-process
ONNX Runtime reference and the benchmarks, so the three can only differ in transport.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweep.data.manifest import Utterance, read_audio
from sweep.errors import EvaluationError
from sweep.evaluate.finals import FINAL_SILENCE_MS, PhraseTiming, phrase_timing, speech_bounds
from sweep.evaluate.variant import ClientVariant
from sweep.model import Contract, ModelInterface, TensorSpec

_TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64",
                  "float64": "FP64"}


@dataclass
class UtteranceResult:
    utterance: Utterance
    logprobs: np.ndarray  # (frames, classes)
    latencies_ms: list[float]
    hypothesis: str = ""
    # Paced runs only (eval.pacing=realtime): chunks answered after their successor's
    # scheduled time, and how far the last answer lagged the end of the audio (0 if not).
    late_chunks: int = 0
    behind_ms: float = 0.0
    # Where the speech lies in the padded audio the client streamed (seconds; None: no
    # speech found) and that audio's length: the final-transcript timing (finals.py).
    speech: tuple[float, float] | None = None
    audio_s: float = 0.0


@dataclass
class StreamRun:
    """What one evaluation pass produced, before decoding and scoring."""

    results: list[UtteranceResult]
    wall_seconds: float
    streams: int
    pacing: str = "none"
    chunk_s: float = 0.0
    audio_seconds: float = field(init=False)
    chunks: int = field(init=False)

    def __post_init__(self) -> None:
        self.audio_seconds = float(sum(r.utterance.duration for r in self.results))
        self.chunks = sum(len(r.latencies_ms) for r in self.results)

    @property
    def latencies_ms(self) -> np.ndarray:
        return np.concatenate([np.asarray(r.latencies_ms) for r in self.results]
                              ) if self.results else np.zeros(0)

    @property
    def late_chunk_fraction(self) -> float:
        """Paced runs: the share of chunks answered after the next chunk was due."""
        return sum(r.late_chunks for r in self.results) / max(self.chunks, 1)

    @property
    def behind_max_ms(self) -> float:
        """Paced runs: how far behind real time the slowest stream ended."""
        return max((r.behind_ms for r in self.results), default=0.0)

    def phrase_timings(self, silence_ms: float = FINAL_SILENCE_MS) -> list[PhraseTiming]:
        """Paced runs: each utterance's final and partial latencies (finals.py); empty
        for an unpaced run, whose audio time is not wall time."""
        if self.pacing != "realtime" or self.chunk_s <= 0:
            return []
        return [phrase_timing(r.speech, r.audio_s, self.chunk_s, r.latencies_ms, silence_ms)
                for r in self.results if r.speech is not None and r.latencies_ms]


def padded_audio(model: ModelInterface, samples: np.ndarray) -> np.ndarray:
    """int16 audio with ``pad_ms`` of silence on both sides (T-one was trained that way),
    then zeros up to a whole number of chunks: the last partial chunk is kept, not dropped."""
    pad = model.sample_rate * model.pad_ms // 1000
    audio = np.concatenate([np.zeros(pad, np.int16), samples.astype(np.int16),
                            np.zeros(pad, np.int16)])
    n = model.chunk_samples
    total = -(-audio.size // n) * n
    return np.pad(audio, (0, total - audio.size))


def chunk_inputs(model: ModelInterface, samples: np.ndarray,
                 variant: ClientVariant | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The audio input(s) of each chunk, batch axis of 1, as the model interface wants them.

    monolithic: int16-range INT32 samples (B, chunk, 1); the model scales them itself.
    skip_preprocessor: float audio scaled by 1/scale with ``left_context_samples`` of the
    previous chunk prepended (zeros before the first), for the stateless preprocessing step.
    ``variant`` departs from that on purpose (the doctor's mis-configured clients); None
    or ``ClientVariant()`` is the above.
    """
    audio = padded_audio(model, samples)
    n = model.chunk_samples
    if model.contract is Contract.MONOLITHIC:
        if variant is not None and variant.scale is not None:
            audio = (audio.astype(np.float32) / np.float32(variant.scale)).astype(np.int32)
        for start in range(0, audio.size, n):
            yield {model.audio_input: audio[start:start + n].astype(np.int32)[None, :, None]}
        return
    context = model.left_context_samples
    scale = model.scale if variant is None or variant.scale is None else variant.scale
    scaled = np.concatenate([np.zeros(context, np.float32),
                             audio.astype(np.float32) / np.float32(scale)])
    missing = 0 if variant is None or variant.left_context_samples is None else \
        max(context - variant.left_context_samples, 0)
    for start in range(0, audio.size, n):
        chunk = scaled[start:start + n + context][None, :]
        if missing:
            chunk = chunk.copy()
            chunk[:, :missing] = 0.0
        yield {"AUDIO_CHUNK": chunk}


def initial_state(model: ModelInterface, inputs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    """Zero state for a new stream (the exports define zeros as 'no history')."""
    state = {}
    for pair in model.states:
        spec = inputs[pair.input]
        state[pair.input] = np.zeros((1, *(spec.dims or (1,))), dtype=spec.dtype)
    return state


def stream_utterance(model: ModelInterface, inputs: dict[str, TensorSpec],
                     samples: np.ndarray,
                     infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
                     ) -> tuple[np.ndarray, list[float]]:
    """Synchronous loop over one utterance's chunks (the reference pipeline uses this)."""
    state = initial_state(model, inputs)
    frames, latencies = [], []
    for chunk in chunk_inputs(model, samples):
        t0 = time.perf_counter()
        out = infer(chunk | state)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        frames.append(out[model.logprobs_output][0])
        state = {p.input: out[p.output].reshape(state[p.input].shape) for p in model.states}
    return np.concatenate(frames), latencies


def padded_speech(model: ModelInterface, samples: np.ndarray
                  ) -> tuple[tuple[float, float] | None, float]:
    """Where the speech lies in the padded audio (seconds; finals.py's energy rule) and
    that audio's length."""
    found = speech_bounds(samples, model.sample_rate)
    pad = model.pad_ms / 1000.0
    audio_s = padded_audio(model, samples).size / model.sample_rate
    return (None if found is None else (found[0] + pad, found[1] + pad)), audio_s


PACINGS = ("none", "realtime")
STATES = ("client", "server")  # server.state: who keeps a stream's state between chunks


class _Schedule:
    """When each chunk of one paced call is due: chunk k at ``t0 + k * chunk_s``, as the
    audio of a phone call arrives. Counts the chunks answered after their successor was
    due (late) and how far the last answer lagged the end of the audio (behind)."""

    def __init__(self, t0: float, chunk_s: float) -> None:
        self.t0 = t0
        self.chunk_s = chunk_s
        self.k = 0  # the next chunk to send
        self.late = 0
        self.behind_ms = 0.0

    def due(self, k: int) -> float:
        return self.t0 + k * self.chunk_s

    @property
    def end(self) -> float:
        """When the audio sent so far ends: the next call's start on this line."""
        return self.due(self.k)

    async def wait(self) -> None:
        delay = self.due(self.k) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    def answered(self, now: float) -> float:
        """Record chunk k's answer at ``now``; its latency from when it was due, in ms."""
        due, successor = self.due(self.k), self.due(self.k + 1)
        self.k += 1
        if now > successor:
            self.late += 1
        # After every chunk: the value left is the lag of the call's last answer.
        self.behind_ms = max(0.0, (now - successor) * 1000.0)
        return (now - due) * 1000.0


class _ShmSlots:
    """One stream's tensors in a system shared-memory region that Triton maps too.

    The state is the bulk of every request (the demo's is 271 kB each way); through gRPC
    it is serialised, framed and copied by both processes on every chunk. Here it never
    leaves the region: each state has two slots, the request reads slot ``cur`` and
    Triton writes the next state into the other one, so the client only writes the
    audio chunk and reads the log-probabilities. Layout: audio inputs | states[0] |
    states[1] | log-probabilities.
    """

    def __init__(self, name: str, audio: dict[str, tuple[tuple[int, ...], np.dtype]],
                 states: dict[str, tuple[tuple[int, ...], np.dtype]],
                 logprobs: tuple[tuple[int, ...], np.dtype]) -> None:
        from multiprocessing import shared_memory

        layout: list[tuple[str, tuple[int, ...], np.dtype]] = []
        layout += [(f"a:{k}", shape, dt) for k, (shape, dt) in audio.items()]
        layout += [(f"s0:{k}", shape, dt) for k, (shape, dt) in states.items()]
        layout += [(f"s1:{k}", shape, dt) for k, (shape, dt) in states.items()]
        layout.append(("logprobs", *logprobs))
        self.offsets: dict[str, tuple[int, int]] = {}
        offset = 0
        for key, shape, dt in layout:
            size = int(np.prod(shape)) * np.dtype(dt).itemsize
            self.offsets[key] = (offset, size)
            offset += -(-size // 64) * 64  # 64-byte aligned tensors
        self.size = offset
        self.name = name
        self.segment = shared_memory.SharedMemory(name=name, create=True, size=self.size)
        self.key = "/" + self.segment.name
        self.views: dict[str, np.ndarray] = {}
        for key, shape, dt in layout:
            off, _ = self.offsets[key]
            self.views[key] = np.ndarray(shape, dtype=dt, buffer=self.segment.buf, offset=off)
        self.cur = 0

    def close(self) -> None:
        self.views.clear()  # the segment cannot close while numpy views export its buffer
        try:
            self.segment.close()
        finally:
            self.segment.unlink()


class GrpcStreamer:
    """N concurrent streams against a Triton endpoint over gRPC (asyncio, one channel).

    ``transport``: how tensors travel. ``"shm"``: through system shared memory regions
    registered with Triton (gRPC carries only the request metadata); needs a server that
    sees this machine's /dev/shm (the local server; a container only with the host's IPC
    namespace). ``"grpc"``: in the gRPC messages, works with any server. ``"auto"``
    (default): shared memory when the server accepts a region, else gRPC. The numbers
    are the same either way (the same bytes reach the model).
    """

    TRANSPORTS = ("auto", "shm", "grpc")

    def __init__(self, model: ModelInterface, grpc_url: str, model_name: str, *,
                 streams: int = 16, timeout_s: float = 30.0, transport: str = "auto",
                 pacing: str = "none", state: str = "client") -> None:
        if state not in STATES:
            raise EvaluationError(f"server.state={state!r}; expected one of "
                                  f"{', '.join(STATES)}.")
        if pacing not in PACINGS:
            raise EvaluationError(f"eval.pacing={pacing!r}; expected one of "
                                  f"{', '.join(PACINGS)}.")
        if streams < 1:
            raise EvaluationError(f"eval.streams={streams}; expected at least 1.")
        if transport not in self.TRANSPORTS:
            raise EvaluationError(f"transport={transport!r}; expected one of "
                                  f"{', '.join(self.TRANSPORTS)}.")
        self.model = model
        self.grpc_url = grpc_url
        self.model_name = model_name
        self.streams = streams
        self.timeout_s = timeout_s
        self.transport = transport
        self.pacing = pacing
        self.state = state
        # Server-side state: every call a sequence of its own (ids unique within a run and,
        # from a random base, unlikely to meet a sequence another client left open).
        self._sequence_ids = itertools.count(random.randrange(1, 2**40))
        self.inputs, self.outputs = model.tensors()
        self.used_transport: str | None = None  # what the last run() used

    def run(self, utterances: list[Utterance],
            on_done: Callable[[UtteranceResult], None] | None = None) -> StreamRun:
        """Every utterance once, ``streams`` at a time (a stream takes the next one from a
        shared queue when it is done with its last)."""
        if not utterances:
            raise EvaluationError("the dataset has no utterances to evaluate.")
        return asyncio.run(self._run(utterances, on_done, None))

    def run_playlists(self, utterances: list[Utterance], playlists: Sequence[Sequence[int]],
                      on_done: Callable[[UtteranceResult], None] | None = None,
                      starts: Sequence[float] | None = None) -> StreamRun:
        """One stream per playlist, each playing its utterances (indices, repeats allowed)
        in order: the capacity search's load of many more streams than utterances.
        ``starts``: when each stream begins, seconds after the run's clock starts (paced;
        sweep/evaluate/arrivals.py); None: staggered over one chunk."""
        if not utterances or not playlists:
            raise EvaluationError("a paced probe needs utterances and at least one stream.")
        if starts is not None and len(starts) != len(playlists):
            raise EvaluationError(f"{len(starts)} start times for {len(playlists)} streams; "
                                  "expected one each.")
        return asyncio.run(self._run(utterances, on_done, playlists, starts))

    async def _run(self, utterances: list[Utterance],
                   on_done: Callable[[UtteranceResult], None] | None,
                   playlists: Sequence[Sequence[int]] | None,
                   starts: Sequence[float] | None = None) -> StreamRun:
        import tritonclient.grpc.aio as aioclient

        client = aioclient.InferenceServerClient(self.grpc_url)
        # Longest first: the last utterances to start are the short ones, so the streams
        # run out of work together instead of one long utterance finishing alone.
        order = sorted(range(len(utterances)), key=lambda i: -utterances[i].duration)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in order:
            queue.put_nowait(i)
        results: list[UtteranceResult] = []
        workers = len(playlists) if playlists is not None else min(self.streams,
                                                                    len(utterances))
        chunk_s = self.model.chunk_ms / 1000.0

        async def worker(number: int, shm: bool, start: float) -> None:
            # Paced: the streams start staggered over one chunk (calls do not arrive in
            # lock step); each call's chunk k is due at its start + k chunk durations,
            # and the stream's next call starts when this one's audio ends.
            due = start + (starts[number] if starts is not None
                           else number * chunk_s / workers)
            if starts is not None and self.pacing == "realtime":
                # A call that arrives later holds no shared-memory region before it does.
                await asyncio.sleep(max(due - time.perf_counter(), 0.0))
            slots = await self._open_slots(client, number) if shm else None
            mine = iter(playlists[number]) if playlists is not None else None
            try:
                while True:
                    if mine is not None:
                        index = next(mine, -1)
                        if index < 0:
                            return
                    else:
                        try:
                            index = queue.get_nowait()
                        except asyncio.QueueEmpty:
                            return
                    schedule = _Schedule(due, chunk_s) if self.pacing == "realtime" else None
                    if slots is not None:
                        result = await self._utterance_shm(client, utterances[index], slots,
                                                           schedule)
                    else:
                        result = await self._utterance(client, utterances[index], schedule)
                    if schedule is not None:
                        due = schedule.end
                        result.late_chunks, result.behind_ms = schedule.late, schedule.behind_ms
                    results.append(result)
                    if on_done is not None:
                        on_done(result)
            finally:
                if slots is not None:
                    await self._close_slots(client, slots)

        try:
            shm = await self._shm_usable(client)
            self.used_transport = "shm" if shm else "grpc"
            # The clock starts after the transport check: the first chunks are not late
            # for the time a shared-memory probe took.
            start = time.perf_counter()
            await asyncio.gather(*(worker(i, shm, start) for i in range(workers)))
        finally:
            await client.close()
        wall = time.perf_counter() - start
        if playlists is None:  # the manifest's order, whatever order they finished in
            rank = {u.id: i for i, u in enumerate(utterances)}
            results.sort(key=lambda r: rank[r.utterance.id])
        return StreamRun(results, wall, workers if playlists is not None else self.streams,
                         pacing=self.pacing, chunk_s=chunk_s)

    async def _timed_infer(self, client: Any, utterance: Utterance, tensors: list[Any],
                           outputs: list[Any], latencies: list[float],
                           schedule: _Schedule | None = None,
                           **sequence: Any) -> Any:
        """One request under the deadline. Unpaced: sent now, its latency measured from
        the send. Paced: sent when its chunk is due (or at once when the stream is already
        late), its latency measured from when it was due, so a server that falls behind
        shows it (no coordinated omission)."""
        if schedule is not None:
            await schedule.wait()
        t0 = time.perf_counter()
        try:
            response = await client.infer(self.model_name, tensors, outputs=outputs,
                                          client_timeout=self.timeout_s, **sequence)
        except Exception as exc:
            raise EvaluationError(
                f"inference on {self.model_name!r} at {self.grpc_url} failed for "
                f"utterance {utterance.id!r}: {exc}") from exc
        now = time.perf_counter()
        if schedule is not None:
            latencies.append(schedule.answered(now))
        else:
            latencies.append((now - t0) * 1000.0)
        return response

    # -- shared-memory transport ------------------------------------------------------

    def _shm_layout(self) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]],
                                   dict[str, tuple[tuple[int, ...], np.dtype]],
                                   tuple[tuple[int, ...], np.dtype]] | None:
        """Shapes of what goes through the region, or None when the tensors do not allow
        it (a dynamic dimension; a state whose next value differs in type or size)."""
        first = next(chunk_inputs(self.model, np.zeros(1, np.int16)))
        audio = {k: (v.shape, v.dtype) for k, v in first.items()}
        states = {k: (v.shape, v.dtype) for k, v in initial_state(self.model,
                                                                  self.inputs).items()}
        for pair in self.model.states:
            out = self.outputs.get(pair.output)
            shape, dtype = states[pair.input]
            if out is None or np.dtype(out.dtype) != dtype or any(d <= 0 for d in out.dims) \
                    or int(np.prod(out.dims or (1,))) != int(np.prod(shape)):
                return None
        spec = self.outputs.get(self.model.logprobs_output)
        if spec is None or not spec.dims or any(d <= 0 for d in spec.dims):
            return None
        return audio, states, ((1, *spec.dims), np.dtype(spec.dtype))

    async def _shm_usable(self, client: object) -> bool:
        if self.transport == "grpc":
            return False
        if self.state == "server":
            if self.transport == "shm":
                raise EvaluationError(
                    "transport='shm' carries the state in shared memory; with "
                    "server.state=server only the audio travels: use transport='grpc' or "
                    "'auto'.")
            return False  # the audio alone: a few kB a chunk, gRPC is enough
        if self._shm_layout() is None:
            if self.transport == "shm":
                raise EvaluationError(
                    f"transport='shm' needs fixed tensor shapes and states whose next value "
                    f"has the state's type and size; {self.model.name!r} has not. Use "
                    "transport='grpc'.")
            return False
        if self.transport == "shm":
            return True
        # auto: a region the server cannot open (another host, a container with its own
        # /dev/shm) is refused at registration; then everything goes through gRPC.
        try:
            slots = await self._open_slots(client, -1)
        except EvaluationError:
            return False
        await self._close_slots(client, slots)
        return True

    async def _open_slots(self, client: object, number: int) -> _ShmSlots:
        import os
        import uuid

        layout = self._shm_layout()
        assert layout is not None
        name = f"trt_sweep_{os.getpid()}_{number}_{uuid.uuid4().hex[:8]}"
        slots = _ShmSlots(name, *layout)
        try:
            await client.register_system_shared_memory(  # type: ignore[attr-defined]
                name, slots.key, slots.size, client_timeout=self.timeout_s)
        except Exception as exc:
            slots.close()
            raise EvaluationError(
                f"the server at {self.grpc_url} cannot map a shared memory region of this "
                f"machine ({exc}); use transport='grpc' for a remote or containerised "
                "server.") from exc
        return slots

    async def _close_slots(self, client: object, slots: _ShmSlots) -> None:
        # Triton lets go of a region a moment after the last response is out: retry.
        try:
            for _ in range(200):
                try:
                    await client.unregister_system_shared_memory(  # type: ignore[attr-defined]
                        slots.name, client_timeout=self.timeout_s)
                    break
                except Exception as exc:
                    # Only the wording tells "in use" apart: Triton 2.51-2.52 answer it with
                    # gRPC INTERNAL, the status of every other failure to unregister too (a
                    # failed munmap); from 2.53 on Triton defers the unregister and says OK.
                    if "in use" not in str(exc):
                        break  # the server is gone or never had it: nothing to release
                    await asyncio.sleep(0.01)
        finally:
            slots.close()

    async def _utterance_shm(self, client: object, utterance: Utterance,
                             slots: _ShmSlots, schedule: _Schedule | None = None
                             ) -> UtteranceResult:
        import tritonclient.grpc.aio as aioclient

        model = self.model
        samples = read_audio(utterance.audio_path, expected_rate=model.sample_rate)
        slots.cur = 0
        for name, value in initial_state(model, self.inputs).items():
            slots.views[f"s0:{name}"][...] = value
        frames: list[np.ndarray] = []
        latencies: list[float] = []
        region = slots.name

        def infer_input(name: str, key: str, array: np.ndarray) -> object:
            tensor = aioclient.InferInput(name, list(array.shape),
                                          _TRITON_DTYPES[array.dtype.name])
            off, size = slots.offsets[key]
            tensor.set_shared_memory(region, size, off)
            return tensor

        def requested(name: str, key: str) -> object:
            out = aioclient.InferRequestedOutput(name)
            off, size = slots.offsets[key]
            out.set_shared_memory(region, size, off)
            return out

        # The request objects only say where the tensors lie: two sets, one per state slot.
        requests = []
        for cur in (0, 1):
            nxt = 1 - cur
            states_in = [infer_input(p.input, f"s{cur}:{p.input}",
                                     slots.views[f"s{cur}:{p.input}"]) for p in model.states]
            outputs = [requested(model.logprobs_output, "logprobs"),
                       *(requested(p.output, f"s{nxt}:{p.input}") for p in model.states)]
            requests.append((states_in, outputs))
        audio_in = {name: infer_input(name, f"a:{name}", slots.views[f"a:{name}"])
                    for name in (k[2:] for k in slots.views if k.startswith("a:"))}
        for chunk in chunk_inputs(model, samples):
            states_in, outputs = requests[slots.cur]
            tensors = []
            for name, array in chunk.items():
                view = slots.views[f"a:{name}"]
                if array.shape == view.shape and array.dtype == view.dtype:
                    view[...] = array
                    tensors.append(audio_in[name])
                else:  # an odd-sized chunk goes the ordinary way
                    tensor = aioclient.InferInput(name, list(array.shape),
                                                  _TRITON_DTYPES[array.dtype.name])
                    tensor.set_data_from_numpy(array)
                    tensors.append(tensor)
            tensors += states_in
            response = await self._timed_infer(client, utterance, tensors, outputs,
                                               latencies, schedule)
            out = response.get_output(model.logprobs_output)
            shape = tuple(int(d) for d in out.shape) if out is not None else (0,)
            logprobs = slots.views["logprobs"]
            if shape != logprobs.shape:
                logprobs = logprobs.reshape(-1)[:int(np.prod(shape))].reshape(shape)
            frames.append(logprobs[0].copy())
            slots.cur = 1 - slots.cur
            if frames[-1].size == 0:
                raise EvaluationError(
                    f"{self.model_name!r} returned an empty {model.logprobs_output!r} "
                    "tensor. With the python backend this is the symptom of numpy 2 in the "
                    "server's environment: the model side needs numpy<2.")
        speech, audio_s = padded_speech(model, samples)
        return UtteranceResult(utterance, np.concatenate(frames), latencies, speech=speech,
                               audio_s=audio_s)

    # -- gRPC transport ---------------------------------------------------------------

    async def _utterance(self, client: object, utterance: Utterance,
                         schedule: _Schedule | None = None) -> UtteranceResult:
        import tritonclient.grpc.aio as aioclient

        samples = read_audio(utterance.audio_path, expected_rate=self.model.sample_rate)
        server_state = self.state == "server"
        # Server-side state: the client holds none and asks for none back.
        state = {} if server_state else initial_state(self.model, self.inputs)
        frames: list[np.ndarray] = []
        latencies: list[float] = []
        outputs = [aioclient.InferRequestedOutput(self.model.logprobs_output),
                   *(aioclient.InferRequestedOutput(p.output) for p in self.model.states
                     if not server_state)]
        chunks = list(chunk_inputs(self.model, samples))
        sequence_id = next(self._sequence_ids) if server_state else 0
        for k, chunk in enumerate(chunks):
            tensors = []
            for name, array in (chunk | state).items():
                tensor = aioclient.InferInput(name, list(array.shape),
                                              _TRITON_DTYPES[array.dtype.name])
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            sequence = {"sequence_id": sequence_id, "sequence_start": k == 0,
                        "sequence_end": k == len(chunks) - 1} if server_state else {}
            response = await self._timed_infer(client, utterance, tensors, outputs,
                                               latencies, schedule, **sequence)
            frames.append(response.as_numpy(self.model.logprobs_output)[0])
            if not server_state:
                state = {p.input: response.as_numpy(p.output).reshape(state[p.input].shape)
                         for p in self.model.states}
            if frames[-1].size == 0:
                raise EvaluationError(
                    f"{self.model_name!r} returned an empty {self.model.logprobs_output!r} "
                    "tensor. With the python backend this is the symptom of numpy 2 in the "
                    "server's environment: the model side needs numpy<2.")
        speech, audio_s = padded_speech(self.model, samples)
        return UtteranceResult(utterance, np.concatenate(frames), latencies, speech=speech,
                               audio_s=audio_s)
