"""An in-process stand-in for a served pipeline: the reference model with another front
end (e.g. DALI) or another client. Lets the doctor judge a preprocessing implementation
before it is deployed anywhere."""

from __future__ import annotations

import numpy as np

from sweep.data.manifest import Utterance
from sweep.evaluate.reference import FeatureFn, OrtPipeline, UtteranceTrace
from sweep.evaluate.variant import ClientVariant
from sweep.model import ModelInterface


class InProcessTarget:
    def __init__(self, model: ModelInterface, *, feature_fn: FeatureFn | None = None,
                 fp16_features: bool = False, variant: ClientVariant | None = None,
                 label: str = "in-process ONNX Runtime") -> None:
        self.model = model
        self.variant = variant or ClientVariant()
        self.label = label
        self.pipeline = OrtPipeline(model, fp16_features=fp16_features, feature_fn=feature_fn)

    def describe(self) -> str:
        return self.label

    def trace(self, utterance: Utterance, samples: np.ndarray) -> UtteranceTrace:
        return self.pipeline.trace(utterance, self.variant, samples=samples)
