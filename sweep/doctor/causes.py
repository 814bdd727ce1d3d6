"""The seed's known causes of Triton-vs-ONNX WER gaps, as reference-side injections.

../shared/seed/ names four: chunk duration, left-context padding, input scaling and fp16
quantisation of features. Each :class:`Cause` says how to re-run the reference so that it
makes that mistake; the doctor keeps the one whose output the server reproduces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.data.manifest import Utterance
from sweep.evaluate.reference import FeatureFn, OrtPipeline, UtteranceTrace
from sweep.evaluate.variant import ClientVariant
from sweep.model import Contract, ModelInterface


@dataclass(frozen=True)
class Cause:
    """One injected mistake; ``None`` fields leave the reference as it is."""

    key: str  # chunk_duration | left_context | input_scaling | fp16_features
    title: str
    change: str  # what the reference does differently, in words
    left_context_samples: int | None = None
    scale: float | None = None
    fp16_features: bool | None = None
    chunk_ms: int | None = None
    onnx_path: Path | None = None  # an export at ``chunk_ms``

    def variant(self) -> ClientVariant:
        return ClientVariant(self.left_context_samples, self.scale)

    def combine(self, other: Cause) -> Cause:
        """Both mistakes at once (the doctor stacks causes when one is not enough)."""
        def pick(a: object, b: object) -> object:
            return b if b is not None else a

        return Cause(
            key=f"{self.key}+{other.key}", title=f"{self.title} + {other.title}",
            change=f"{self.change}; {other.change}",
            left_context_samples=pick(self.left_context_samples,
                                      other.left_context_samples),  # type: ignore[arg-type]
            scale=pick(self.scale, other.scale),  # type: ignore[arg-type]
            fp16_features=pick(self.fp16_features, other.fp16_features),  # type: ignore[arg-type]
            chunk_ms=pick(self.chunk_ms, other.chunk_ms),  # type: ignore[arg-type]
            onnx_path=pick(self.onnx_path, other.onnx_path))  # type: ignore[arg-type]

    @property
    def keys(self) -> set[str]:
        return set(self.key.split("+"))


NONE = Cause("none", "none", "the reference as configured")


def known_causes(model: ModelInterface, *, reference_fp16: bool = False,
                 alt_exports: Mapping[int, Path] | None = None
                 ) -> tuple[list[Cause], dict[str, str]]:
    """The causes that apply to this contract, and why the others do not."""
    causes: list[Cause] = []
    skipped: dict[str, str] = {}
    ensemble = model.contract is Contract.SKIP_PREPROCESSOR
    for chunk_ms, path in sorted((alt_exports or {}).items()):
        if chunk_ms != model.chunk_ms:
            causes.append(Cause("chunk_duration", "chunk duration",
                                f"{chunk_ms} ms chunks instead of {model.chunk_ms} ms "
                                f"({Path(path).name})", chunk_ms=chunk_ms,
                                onnx_path=Path(path)))
    if not causes:
        skipped["chunk_duration"] = (
            "no export at another chunk duration was given (--alt-onnx MS=PATH: the same "
            "checkpoint exported with --chunk-ms MS)")
    if ensemble:
        context = model.left_context_samples
        if context:
            causes.append(Cause("left_context", "left-context padding",
                                f"0 samples of left context instead of {context} (zeros "
                                "where the previous chunk's tail belongs)",
                                left_context_samples=0))
        else:
            skipped["left_context"] = "the model interface sends no left context"
        causes.append(Cause("input_scaling", "input scaling",
                            f"int16-range values sent as float (not divided by "
                            f"{model.scale:g})", scale=1.0))
        if model.scale != 32768.0:
            causes.append(Cause("input_scaling", "input scaling",
                                f"samples divided by 32768 instead of {model.scale:g}",
                                scale=32768.0))
        causes.append(Cause("fp16_features", "fp16 quantisation of features",
                            "features rounded to fp16 and back" if not reference_fp16 else
                            "fp32 features (no fp16 round trip)",
                            fp16_features=not reference_fp16))
    else:
        skipped["left_context"] = ("the monolithic model keeps the previous chunk's last "
                                   "samples in its own state; the client sends none")
        causes.append(Cause("input_scaling", "input scaling",
                            f"float audio in [-1, 1] (int16 / {model.scale:g}) sent to the "
                            "INT32 input, truncated", scale=model.scale))
        skipped["fp16_features"] = ("features are computed inside the model graph; their "
                                    "precision is the engine's (trt.* flags)")
    return causes, skipped


class ReferenceRunner:
    """Runs the reference with a cause injected; sessions and audio are made once."""

    def __init__(self, model: ModelInterface, *, reference_fp16: bool = False,
                 feature_fn: FeatureFn | None = None,
                 graph_optimization_level: str = "ORT_ENABLE_ALL") -> None:
        self.model = model
        self.reference_fp16 = reference_fp16
        self.feature_fn = feature_fn
        self.graph_optimization_level = graph_optimization_level
        self._pipelines: dict[tuple[Path, int, bool], OrtPipeline] = {}

    def pipeline(self, cause: Cause) -> OrtPipeline:
        fp16 = self.reference_fp16 if cause.fp16_features is None else cause.fp16_features
        chunk_ms = cause.chunk_ms or self.model.chunk_ms
        path = cause.onnx_path or self.model.onnx_path
        key = (Path(path), chunk_ms, fp16)
        if key not in self._pipelines:
            model = dataclasses.replace(self.model, chunk_ms=chunk_ms, onnx_path=Path(path))
            self._pipelines[key] = OrtPipeline(
                model, graph_optimization_level=self.graph_optimization_level,
                fp16_features=fp16, feature_fn=self.feature_fn)
        return self._pipelines[key]

    def run(self, cause: Cause, utterances: list[Utterance],
            audio: Mapping[str, np.ndarray]) -> list[UtteranceTrace]:
        pipeline = self.pipeline(cause)
        variant = cause.variant()
        return [pipeline.trace(u, variant, samples=audio[u.id]) for u in utterances]
