"""Triton python-backend model: stateless log-mel features (the ensemble's first step)."""

from __future__ import annotations

import os
import sys
from typing import Any

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batched import run_batched, setup_site_packages


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = setup_site_packages(args)
        # features.py is copied beside this file from sweep/features.py at render time, so
        # the server computes exactly the features the reference pipeline computes.
        import features

        self.features = features
        self.fp16_round_trip = params.get("fp16_round_trip", "false") == "true"

    def _run(self, feed: dict[str, Any]) -> list[Any]:
        import numpy as np

        mel = self.features.log_mel(feed["AUDIO_CHUNK"].astype(np.float32),
                                    fp16_round_trip=self.fp16_round_trip)
        length = np.full((mel.shape[0], 1), mel.shape[-1], dtype=np.int64)
        return [mel.astype(np.float32), length]

    def execute(self, requests: list[Any]) -> list[Any]:
        return run_batched(pb_utils, requests, ["AUDIO_CHUNK"], ["AUDIO_SIGNAL", "LENGTH"],
                           self._run)
