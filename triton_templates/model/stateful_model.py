"""Triton python-backend model for server.state=server: the emulated engine (ONNX Runtime)
behind the sequence batcher, each sequence's state kept here.

The python backend of the embedded tritonserver does not carry implicit state (a state
input stayed at its initial zeros over three requests of one sequence), so this model
keeps it: keyed by the CORRID control, zeros at START, dropped at END or once a sequence
has been idle for longer than the batcher's idle timeout (Triton tells a python model
nothing when it releases an idle sequence). The `oldest` strategy hands one request per
sequence in a batch; their states are stacked and run as one array, as the stateless
model does with its requests.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batched import answer_each, setup_site_packages


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = setup_site_packages(args)
        import numpy as np
        import onnxruntime as ort

        self.np = np
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, params.get("graph_optimization_level", "ORT_ENABLE_ALL"))
        threads = int(params.get("intra_op_num_threads", "1"))
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if threads != 1:  # idle spinning threads starve the client on a small host
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        # "input:output:dtype:d1xd2;..." (sweep/server/repository.py _state_tensors)
        self.states: dict[str, dict[str, Any]] = {}
        for entry in filter(None, params["state_tensors"].split(";")):
            name, output, dtype, dims = entry.split(":")
            self.states[name] = {"output": output, "dtype": dtype,
                                 "dims": [int(d) for d in dims.split("x") if d]}
        self.idle_s = int(params.get("sequence_idle_us", "10000000")) / 1e6
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.state_outputs = {spec["output"]: name for name, spec in self.states.items()}
        self.returned = [o for o in self.outputs if o not in self.state_outputs]
        self.audio_inputs = [i.name for i in self.session.get_inputs()
                             if i.name not in self.states]
        self.input_rank = {i.name: len(i.shape) for i in self.session.get_inputs()}
        # corrid -> (state arrays without the batch axis, last use)
        self.kept: dict[int, tuple[dict[str, Any], float]] = {}

    def _zero(self) -> dict[str, Any]:
        return {name: self.np.zeros(spec["dims"], dtype=spec["dtype"])
                for name, spec in self.states.items()}

    def _control(self, request: Any, name: str) -> int:
        return int(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])

    def _evict_idle(self, now: float) -> None:
        for corrid in [c for c, (_, used) in self.kept.items() if now - used > self.idle_s]:
            del self.kept[corrid]

    def execute(self, requests: list[Any]) -> list[Any]:
        now = time.monotonic()
        self._evict_idle(now)
        # A sequence's state is stored only once its run succeeded, so a batch that failed
        # can be run again request by request.
        return answer_each(pb_utils, requests, lambda batch: self._run(batch, now))

    def _run(self, requests: list[Any], now: float) -> list[Any]:
        np = self.np
        ids: list[int] = []
        ends: list[int] = []
        audio: dict[str, list[Any]] = {name: [] for name in self.audio_inputs}
        states: dict[str, list[Any]] = {name: [] for name in self.states}
        for request in requests:
            corrid = self._control(request, "CORRID")
            start = self._control(request, "START")
            kept = self.kept.get(corrid)
            state = self._zero() if start or kept is None else kept[0]
            for name in self.states:
                states[name].append(state[name][None])
            for name in self.audio_inputs:
                audio[name].append(pb_utils.get_input_tensor_by_name(request,
                                                                     name).as_numpy())
            ids.append(corrid)
            ends.append(self._control(request, "END"))
        sizes = [a.shape[0] for a in audio[self.audio_inputs[0]]]
        if any(size != 1 for size in sizes):
            raise ValueError("a sequence's request carries one chunk (batch axis of 1); "
                             f"got batch sizes {sizes}")
        feed = {name: np.concatenate(parts) for name, parts in (audio | states).items()}
        feed = {name: (a.reshape(a.shape[0]) if self.input_rank[name] == 1 else a)
                for name, a in feed.items()}
        results = dict(zip(self.outputs, self.session.run(self.outputs, feed),
                           strict=True))
        responses = []
        for i in range(len(ids)):
            tensors = []
            for name in self.returned:
                value = results[name][i:i + 1]
                if value.ndim == 1:
                    value = value.reshape(1, 1)
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        for i, (corrid, end) in enumerate(zip(ids, ends, strict=True)):
            if end:
                self.kept.pop(corrid, None)
            else:
                self.kept[corrid] = ({name: np.array(results[spec["output"]][i]).reshape(
                    spec["dims"]) for name, spec in self.states.items()}, now)
        return responses
