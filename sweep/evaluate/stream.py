"""The streaming client: every utterance chunk by chunk, its state round-tripped, N at once.

Chunking is written once (``chunk_inputs``) and shared by the gRPC client, the in-process
ONNX Runtime reference and the benchmarks, so the three can only differ in transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sweep.data.manifest import Utterance, read_audio
from sweep.errors import EvaluationError
from sweep.evaluate.variant import ClientVariant
from sweep.model import ModelInterface, TensorSpec

_TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64",
                  "float64": "FP64"}


@dataclass
class UtteranceResult:
    utterance: Utterance
    logprobs: np.ndarray  # (frames, classes)
    latencies_ms: list[float]
    hypothesis: str = ""


@dataclass
class StreamRun:
    """What one evaluation pass produced, before decoding and scoring."""

    results: list[UtteranceResult]
    wall_seconds: float
    streams: int
    audio_seconds: float = field(init=False)
    chunks: int = field(init=False)

    def __post_init__(self) -> None:
        self.audio_seconds = float(sum(r.utterance.duration for r in self.results))
        self.chunks = sum(len(r.latencies_ms) for r in self.results)

    @property
    def latencies_ms(self) -> np.ndarray:
        return np.concatenate([np.asarray(r.latencies_ms) for r in self.results]
                              ) if self.results else np.zeros(0)


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
    if model.contract == "monolithic":
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


class GrpcStreamer:
    """N concurrent streams against a Triton endpoint over gRPC (asyncio, one channel)."""

    def __init__(self, model: ModelInterface, grpc_url: str, model_name: str, *,
                 streams: int = 16, timeout_s: float = 30.0) -> None:
        if streams < 1:
            raise EvaluationError(f"eval.streams={streams}; expected at least 1.")
        self.model = model
        self.grpc_url = grpc_url
        self.model_name = model_name
        self.streams = streams
        self.timeout_s = timeout_s
        self.inputs, _ = model.tensors()

    def run(self, utterances: list[Utterance],
            on_done: Callable[[UtteranceResult], None] | None = None) -> StreamRun:
        if not utterances:
            raise EvaluationError("the dataset has no utterances to evaluate.")
        return asyncio.run(self._run(utterances, on_done))

    async def _run(self, utterances: list[Utterance],
                   on_done: Callable[[UtteranceResult], None] | None) -> StreamRun:
        import tritonclient.grpc.aio as aioclient

        client = aioclient.InferenceServerClient(self.grpc_url)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(utterances)):
            queue.put_nowait(i)
        results: list[UtteranceResult | None] = [None] * len(utterances)

        async def worker() -> None:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                result = await self._utterance(client, utterances[index])
                results[index] = result
                if on_done is not None:
                    on_done(result)

        start = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(min(self.streams, len(utterances)))))
        finally:
            await client.close()
        wall = time.perf_counter() - start
        return StreamRun([r for r in results if r is not None], wall, self.streams)

    async def _utterance(self, client: object, utterance: Utterance) -> UtteranceResult:
        import tritonclient.grpc.aio as aioclient

        samples = read_audio(utterance.audio_path, expected_rate=self.model.sample_rate)
        state = initial_state(self.model, self.inputs)
        frames: list[np.ndarray] = []
        latencies: list[float] = []
        outputs = [aioclient.InferRequestedOutput(self.model.logprobs_output),
                   *(aioclient.InferRequestedOutput(p.output) for p in self.model.states)]
        for chunk in chunk_inputs(self.model, samples):
            tensors = []
            for name, array in (chunk | state).items():
                tensor = aioclient.InferInput(name, list(array.shape),
                                              _TRITON_DTYPES[array.dtype.name])
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            t0 = time.perf_counter()
            try:
                response = await client.infer(  # type: ignore[attr-defined]
                    self.model_name, tensors, outputs=outputs, client_timeout=self.timeout_s)
            except Exception as exc:
                raise EvaluationError(
                    f"inference on {self.model_name!r} at {self.grpc_url} failed for "
                    f"utterance {utterance.id!r}: {exc}") from exc
            latencies.append((time.perf_counter() - t0) * 1000.0)
            frames.append(response.as_numpy(self.model.logprobs_output)[0])
            state = {p.input: response.as_numpy(p.output).reshape(state[p.input].shape)
                     for p in self.model.states}
            if frames[-1].size == 0:
                raise EvaluationError(
                    f"{self.model_name!r} returned an empty {self.model.logprobs_output!r} "
                    "tensor. With the python backend this is the symptom of numpy 2 in the "
                    "server's environment: the model side needs numpy<2.")
        return UtteranceResult(utterance, np.concatenate(frames), latencies)
