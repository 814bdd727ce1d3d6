"""Small ONNX models built on the fly."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_monolithic_onnx(path: Path, chunk: int = 3200, frames: int = 20, state: int = 10,
                         real_state: int | None = None) -> Path:
    """A small model in the monolithic contract: INT32 samples -> frames x 35 logprobs;
    the state accumulates the chunk's mean so a broken state round-trip shows.

    ``real_state``: the graph makes a state_next this wide while both state tensors are
    still declared ``state`` wide (an export whose declared sizes are wrong)."""
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array(rng.randn(chunk // frames, 35).astype(np.float32) * 1e-3,
                                     "W"),
             numpy_helper.from_array(np.array([0, frames, chunk // frames], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [
        helper.make_node("Cast", ["signal"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Reshape", ["f", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "W"], ["m"], name="matmul"),
        helper.make_node("LogSoftmax", ["m"], ["logprobs"], axis=-1, name="logsoftmax"),
        helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2], keepdims=0, name="mean"),
        helper.make_node("Unsqueeze", ["mean", "axis1"], ["mean2"], name="unsqueeze"),
        helper.make_node("Add", ["state", "mean2"],
                         ["state_next" if real_state is None else "added"], name="add"),
    ]
    if real_state is not None:  # (B, state) + (B, real_state - state) of the chunk's mean
        inits.append(numpy_helper.from_array(np.array([1, real_state - state], np.int64),
                                             "extra_shape"))
        nodes += [helper.make_node("Expand", ["mean2", "extra_shape"], ["extra"],
                                   name="expand"),
                  helper.make_node("Concat", ["added", "extra"], ["state_next"], axis=1,
                                   name="concat")]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("signal", TensorProto.INT32, ["batch", chunk, 1]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", state])],
        [helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["batch", frames, 35]),
         helper.make_tensor_value_info("state_next", TensorProto.FLOAT, ["batch", state])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@functools.lru_cache(maxsize=4)
def demo_reference_wer(dataset: str = "demo_tiny") -> float:
    """Greedy WER of the shipped fp32 monolithic demo streamed in-process (ONNX Runtime):
    what a served fp32 engine must reproduce, and what a reduced-precision one is held to.
    Measured, not written down, so retraining the demo model moves the bar with it."""
    from demo.export import evaluate_onnx
    from tests.support.paths import DEMO

    return evaluate_onnx(DEMO / "demo_monolithic.onnx", DEMO / "data" / dataset).wer
