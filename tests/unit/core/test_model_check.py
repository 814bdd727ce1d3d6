"""Model checks before any build: one zero chunk through ONNX Runtime must produce every
tensor the ONNX declares, at the declared shape and type."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from sweep.errors import ModelError
from sweep.model import ModelInterface, StatePair
from tests.support.models import tiny_monolithic_onnx


def _interface(path: Path, **overrides: object) -> ModelInterface:
    values: dict[str, object] = dict(
        name="tiny", onnx_path=path, contract="monolithic", audio_input="signal",
        logprobs_output="logprobs", states=(StatePair("state", "state_next"),))
    values.update(overrides)
    return ModelInterface(**values)  # type: ignore[arg-type]


def test_a_model_that_runs_as_declared_passes(tmp_path: Path) -> None:
    model = _interface(tiny_monolithic_onnx(tmp_path / "tiny.onnx"))
    checked = model.check()
    assert checked.inputs["state"].dims == (10,) and checked.outputs["logprobs"].dims == (20, 35)
    assert checked.how == "one zero chunk ran as declared (ONNX Runtime)"


def test_a_state_declared_narrower_than_the_graph_makes_is_refused(tmp_path: Path) -> None:
    """The case that passed every static check and crashed the server: declared 1000 wide
    on both sides, the graph makes 105489."""
    path = tiny_monolithic_onnx(tmp_path / "wrong_state.onnx", state=1000, real_state=105489)
    model = _interface(path)
    inputs, outputs = model.tensors()  # the static checks pass: the declarations agree
    assert inputs["state"].dims == outputs["state_next"].dims == (1000,)
    with pytest.raises(ModelError) as info:
        model.check()
    message = str(info.value)
    assert str(path) in message
    assert "'state_next' is declared (batch, 1000)" in message
    assert "(1, 105489)" in message


def test_a_declared_type_the_graph_does_not_produce_is_refused(tmp_path: Path) -> None:
    path = tiny_monolithic_onnx(tmp_path / "typed.onnx")
    graph = onnx.load(str(path))
    for value in graph.graph.output:  # declare logprobs FP16; the graph makes FLOAT
        if value.name == "logprobs":
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(graph, str(path))
    with pytest.raises(ModelError, match="logprobs") as info:
        _interface(path).check()
    assert str(path) in str(info.value)


def test_an_op_onnx_runtime_lacks_falls_back_to_strict_shape_inference(tmp_path: Path
                                                                       ) -> None:
    """A graph ONNX Runtime cannot run here (a TensorRT plugin, say) is held to ONNX's
    strict shape inference: declared shapes that agree pass, naming how it was checked;
    a wrong state size is still refused."""
    for real_state, ok in ((None, True), (1050, False)):
        path = tiny_monolithic_onnx(tmp_path / f"plugin{real_state}.onnx", state=1000,
                                    real_state=real_state)
        graph = onnx.load(str(path))
        # An identity in a domain ORT does not know: ORT refuses the graph, ONNX's shape
        # inference skips the node (its output keeps the shape it is given).
        graph.graph.node.append(onnx.helper.make_node("Identity", ["logprobs"], ["unused"],
                                                      name="plugin", domain="trt.plugins"))
        graph.opset_import.append(onnx.helper.make_opsetid("trt.plugins", 1))
        onnx.save(graph, str(path))
        model = _interface(path)
        if ok:
            how = model.check().how
            assert how.startswith("strict shape inference agrees") and "ONNX Runtime" in how
        else:
            with pytest.raises(ModelError, match=r"differ in dimension 1: \(1050\) vs \(1000\)"):
                model.check()


def test_too_few_classes_for_the_blank_is_refused(tmp_path: Path) -> None:
    model = _interface(tiny_monolithic_onnx(tmp_path / "tiny.onnx"), blank_id=40)
    with pytest.raises(ModelError, match=r"'logprobs' has 35 classes.*blank_id=40"):
        model.check()


def test_a_missing_file_is_one_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        _interface(tmp_path / "nope.onnx").check()


def test_the_demo_models_pass() -> None:
    from sweep.doctor.cli import load_model

    for name in ("demo_monolithic", "demo_monolithic_fp16", "demo_skip_preprocessor"):
        load_model(name).check()
