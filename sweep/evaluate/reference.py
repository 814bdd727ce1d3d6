"""The reference pipeline: the same chunking and state loop, in-process ONNX Runtime, no
Triton and no gRPC. What the served engine must reproduce.

Besides whole runs (``run``), it records what happened chunk by chunk (``trace``): the
features handed to the model and the log-probabilities it returned. The parity doctor
compares such traces with the served pipeline's, and re-runs the reference with a known
mis-configuration injected (a :class:`~sweep.evaluate.variant.ClientVariant`, fp16
features, another front end) to find which one the server reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.data.manifest import Utterance, read_audio
from sweep.evaluate.stream import (
    StreamRun,
    UtteranceResult,
    chunk_inputs,
    initial_state,
    stream_utterance,
)
from sweep.evaluate.variant import ClientVariant
from sweep.model import Contract, ModelInterface

FeatureFn = Callable[[np.ndarray], np.ndarray]
"""float audio (B, samples) -> log-mel (B, n_mels, frames)."""


@dataclass
class UtteranceTrace:
    """One utterance streamed chunk by chunk: what each chunk fed and produced."""

    utterance: Utterance
    chunk_samples: int
    sample_rate: int
    logprobs: list[np.ndarray]  # per chunk: (frames, classes)
    # Per chunk: (n_mels, frames) handed to the acoustic model; None when the model
    # computes its features inside the graph (monolithic), where nobody can observe them.
    features: list[np.ndarray] | None = None

    @property
    def chunks(self) -> int:
        return len(self.logprobs)

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_samples / self.sample_rate

    def all_logprobs(self) -> np.ndarray:
        return np.concatenate(self.logprobs) if self.logprobs else np.zeros((0, 0), np.float32)

    def all_features(self) -> np.ndarray | None:
        return None if self.features is None else np.concatenate(self.features, axis=-1)


class OrtPipeline:
    """Runs an ONNX file (the original export or an emulated engine) chunk by chunk.

    Only the monolithic contract carries its own features; for the skip-preprocessor
    contract the preprocessing step is the same numpy code the Triton ensemble runs, or
    ``feature_fn`` (e.g. the DALI pipeline of :mod:`sweep.data.dali`).
    """

    def __init__(self, model: ModelInterface, onnx_path: Path | None = None, *,
                 graph_optimization_level: str = "ORT_ENABLE_ALL", threads: int = 1,
                 fp16_features: bool = False, feature_fn: FeatureFn | None = None,
                 on_feed: Callable[[dict[str, np.ndarray]], None] | None = None) -> None:
        import time

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   graph_optimization_level)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.model = model
        self.session = ort.InferenceSession(str(onnx_path or model.onnx_path), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ranks = {i.name: len(i.shape) for i in self.session.get_inputs()}
        self.inputs, _ = model.tensors()
        self.fp16_features = fp16_features
        self.feature_fn = feature_fn
        # Sees every chunk's model inputs, state included (calibration data).
        self.on_feed = on_feed
        self._clock = time.perf_counter

    def features(self, audio_chunk: np.ndarray) -> np.ndarray:
        """Log-mel of one AUDIO_CHUNK (left context included), as the ensemble computes it."""
        if self.feature_fn is not None:
            mel = np.asarray(self.feature_fn(audio_chunk), dtype=np.float32)
            if self.fp16_features:
                mel = mel.astype(np.float16).astype(np.float32)
            return mel
        from sweep.data.features import log_mel

        return log_mel(audio_chunk, fp16_round_trip=self.fp16_features).astype(np.float32)

    def infer_features(self, mel: np.ndarray, feed: dict[str, np.ndarray]
                       ) -> dict[str, np.ndarray]:
        """Run the acoustic model on given features plus the rest of ``feed`` (state)."""
        feed = dict(feed)
        feed[self.model.audio_input] = mel
        if self.model.length_input:
            feed[self.model.length_input] = np.full((mel.shape[0],), mel.shape[-1], np.int64)
        return self._run(feed)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = dict(feed)
        if "AUDIO_CHUNK" in feed:
            return self.infer_features(self.features(feed.pop("AUDIO_CHUNK")), feed)
        return self._run(feed)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: (v.reshape(v.shape[0]) if self.ranks[k] == 1 else v) for k, v in feed.items()}
        if self.on_feed is not None:
            self.on_feed(feed)
        return dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))

    def run(self, utterances: list[Utterance]) -> StreamRun:
        start = self._clock()
        results = []
        for utterance in utterances:
            samples = read_audio(utterance.audio_path, expected_rate=self.model.sample_rate)
            logprobs, latencies = stream_utterance(self.model, self.inputs, samples, self.infer)
            results.append(UtteranceResult(utterance, logprobs, latencies))
        return StreamRun(results, self._clock() - start, streams=1)

    def trace(self, utterance: Utterance, variant: ClientVariant | None = None,
              samples: np.ndarray | None = None) -> UtteranceTrace:
        """Stream one utterance, keeping every chunk's features and log-probabilities.

        ``variant`` feeds the chunks the way a mis-configured client would.
        """
        if samples is None:
            samples = read_audio(utterance.audio_path, expected_rate=self.model.sample_rate)
        state = initial_state(self.model, self.inputs)
        logprobs: list[np.ndarray] = []
        features: list[np.ndarray] | None = (
            [] if self.model.contract is Contract.SKIP_PREPROCESSOR else None)
        for chunk in chunk_inputs(self.model, samples, variant):
            if "AUDIO_CHUNK" in chunk:
                mel = self.features(chunk["AUDIO_CHUNK"])
                assert features is not None
                features.append(mel[0])
                out = self.infer_features(mel, state)
            else:
                out = self._run(chunk | state)
            logprobs.append(out[self.model.logprobs_output][0])
            state = {p.input: out[p.output].reshape(state[p.input].shape)
                     for p in self.model.states}
        return UtteranceTrace(utterance, self.model.chunk_samples, self.model.sample_rate,
                              logprobs, features)
