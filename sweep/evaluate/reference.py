"""The reference pipeline: the same chunking and state loop, in-process ONNX Runtime, no
Triton and no gRPC. What the served engine must reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sweep.data.manifest import Utterance, read_audio
from sweep.evaluate.stream import StreamRun, UtteranceResult, stream_utterance
from sweep.model import ModelInterface


class OrtPipeline:
    """Runs an ONNX file (the original export or an emulated engine) chunk by chunk.

    Only the monolithic contract carries its own features; for the skip-preprocessor
    contract the preprocessing step is the same numpy code the Triton ensemble runs.
    """

    def __init__(self, model: ModelInterface, onnx_path: Path | None = None, *,
                 graph_optimization_level: str = "ORT_ENABLE_ALL", threads: int = 1,
                 fp16_features: bool = False) -> None:
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
        self._clock = time.perf_counter

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = dict(feed)
        if "AUDIO_CHUNK" in feed:
            from sweep.features import log_mel

            mel = log_mel(feed.pop("AUDIO_CHUNK"), fp16_round_trip=self.fp16_features)
            feed[self.model.audio_input] = mel.astype(np.float32)
            if self.model.length_input:
                feed[self.model.length_input] = np.full((mel.shape[0],), mel.shape[-1],
                                                        np.int64)
        feed = {k: (v.reshape(v.shape[0]) if self.ranks[k] == 1 else v) for k, v in feed.items()}
        return dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))

    def run(self, utterances: list[Utterance]) -> StreamRun:
        start = self._clock()
        results = []
        for utterance in utterances:
            samples = read_audio(utterance.audio_path, expected_rate=self.model.sample_rate)
            logprobs, latencies = stream_utterance(self.model, self.inputs, samples, self.infer)
            results.append(UtteranceResult(utterance, logprobs, latencies))
        return StreamRun(results, self._clock() - start, streams=1)
