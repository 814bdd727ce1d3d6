"""Triton python-backend model: an emulated engine (rewritten ONNX) run by ONNX Runtime."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batched import run_batched, setup_site_packages


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = setup_site_packages(args)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, params.get("graph_optimization_level", "ORT_ENABLE_ALL"))
        threads = int(params.get("intra_op_num_threads", "1"))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if threads != 1:
            # Idle intra-op threads spin by default; this server shares its cores with the
            # client and the other instances, and a spinning thread there made every run
            # two to four times slower on a 2-core machine (bench/README.md). Sleeping
            # threads change no result, only who gets the core.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        # Triton declares rank-1 (batch-only) tensors as dims [1]; ONNX wants (B,).
        self.input_rank = {i.name: len(i.shape) for i in self.session.get_inputs()}

    def _run(self, feed: dict[str, Any]) -> list[Any]:
        feed = {name: (a.reshape(a.shape[0]) if self.input_rank[name] == 1 else a)
                for name, a in feed.items()}
        results = self.session.run(self.outputs, feed)
        return [r.reshape(r.shape[0], 1) if r.ndim == 1 else r for r in results]

    def execute(self, requests: list[Any]) -> list[Any]:
        return run_batched(pb_utils, requests, self.inputs, self.outputs, self._run)
