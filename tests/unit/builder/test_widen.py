"""The emulator runs a typed ONNX on ONNX Runtime's CPU provider: fp16/bf16 widened to
fp32 and rounded where the graph stores them; fp32 graphs untouched."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from sweep.builder.widen import widen
from tests.support.models import tiny_monolithic_onnx


def _typed(low: int) -> onnx.ModelProto:
    # x (fp32) -> Cast(low) -> Mul(w: low) -> Softmax (low) -> Cast(fp32) -> y
    np_low = ml_dtypes.bfloat16 if low == TensorProto.BFLOAT16 else np.float16
    w = helper.make_tensor("w", low, [3], np.array([1.1, -2.3, 3.7], np.float32)
                           .astype(np_low).tobytes(), raw=True)
    nodes = [helper.make_node("Cast", ["x"], ["xl"], to=low, name="cast_in"),
             helper.make_node("Mul", ["xl", "w"], ["m"], name="mul"),
             helper.make_node("Softmax", ["m"], ["s"], axis=-1, name="softmax"),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT, name="cast_out")]
    graph = helper.make_graph(nodes, "typed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    return model


def test_bf16_graph_runs_with_bf16_storage() -> None:
    x = np.array([[0.3, 1.7, -0.9], [2.2, -1.1, 0.05]], np.float32)
    wide, stats = widen(_typed(TensorProto.BFLOAT16))
    assert stats.changed and stats.weights == 1
    y = ort.InferenceSession(wide.SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ml_dtypes.bfloat16
    xl = x.astype(b).astype(np.float32)
    m = (xl * np.array([1.1, -2.3, 3.7], np.float32).astype(b).astype(np.float32)
         ).astype(b).astype(np.float32)
    e = np.exp(m - m.max(-1, keepdims=True))
    expected = (e / e.sum(-1, keepdims=True)).astype(b).astype(np.float32)
    np.testing.assert_allclose(y, expected, rtol=0, atol=float(np.finfo(np.float32).eps) * 8)
    # Every stored value is a bf16 value: rounding happened where the graph stores it.
    assert np.array_equal(y, y.astype(b).astype(np.float32))


def test_fp32_graph_comes_back_unchanged(tmp_path) -> None:
    model = onnx.load(str(tiny_monolithic_onnx(tmp_path / "m.onnx")))
    before = model.SerializeToString()
    same, stats = widen(model)
    assert not stats.changed and same.SerializeToString() == before


def test_a_typed_onnx_the_emulator_cannot_execute_is_refused_with_the_reason(
        tmp_path) -> None:
    import pytest

    from sweep.builder.emulate import EmulateBuilder
    from sweep.errors import FlagSetError
    from sweep.flags import FlagSet

    # A TensorRT plugin op: a GPU host's engine has it, ONNX Runtime's CPU provider not.
    node = helper.make_node("ScaledLayerNormPlugin", ["x"], ["y"], domain="trt.plugins",
                            name="plugin")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("trt.plugins", 1)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "typed.onnx"))
    with pytest.raises(FlagSetError, match=r"cannot execute the typed ONNX .* builder=trtexec"):
        EmulateBuilder().build(tmp_path / "typed.onnx",
                               FlagSet.from_mapping({"strongly_typed": True}), tmp_path / "w")


def _fp16_io() -> onnx.ModelProto:
    # An exporter-typed graph whose interface is fp16 itself (T-one's FP16 state):
    # state (fp16) -> Mul(w: fp16) -> state_next (fp16)
    w = helper.make_tensor("w", TensorProto.FLOAT16, [3],
                           np.array([1.1, -2.3, 3.7], np.float16).tobytes(), raw=True)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["state", "w"], ["state_next"], name="mul")], "fp16_io",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT16, [2, 3])],
        [helper.make_tensor_value_info("state_next", TensorProto.FLOAT16, [2, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    return model


def test_an_fp16_interface_is_kept_with_keep_io_types() -> None:
    state = np.array([[0.3, 1.7, -0.9], [2.2, -1.1, 0.05]], np.float16)
    wide, _ = widen(_fp16_io(), keep_io_types=True)
    io = {v.name: v.type.tensor_type.elem_type for v in (*wide.graph.input, *wide.graph.output)}
    assert io == {"state": TensorProto.FLOAT16, "state_next": TensorProto.FLOAT16}
    out = ort.InferenceSession(wide.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"state": state})[0]
    assert out.dtype == np.float16
    expected = (state.astype(np.float32) * np.array([1.1, -2.3, 3.7], np.float16)
                .astype(np.float32)).astype(np.float16)
    assert np.array_equal(out, expected)
    # Without it the boundary is widened: the client speaks the model's float32.
    wide, _ = widen(_fp16_io(), keep_io_types=False)
    assert {v.type.tensor_type.elem_type for v in wide.graph.input} == {TensorProto.FLOAT}
