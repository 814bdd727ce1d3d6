"""Layer pins as TensorRT applies them: the layers its ONNX parser derives from a node
(``<node>_<N>``) are pinned with it, and node names are matched literally ('[' ']' too)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from sweep.builder import layers
from sweep.builder.tensorrt_api import _pinned_node
from sweep.builder.trtexec import layer_patterns
from sweep.flags import FlagSet


def _graph(*names: tuple[str, str]) -> onnx.GraphProto:
    nodes = [helper.make_node(op, ["x"], [f"y{i}"], name=name)
             for i, (name, op) in enumerate(names)]
    return helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1])
         for i in range(len(names))])


def test_brackets_in_node_names_are_literal() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="/blocks[0]/act/Relu")
    assert layers.matches("/blocks[0]/act/Relu", node)
    assert layers.matches("/blocks[0]/*", node)
    # fnmatch read "[0]" as a class and matched "/blocks0/..." instead.
    assert not layers.matches("/blocks[0]/*", helper.make_node("Relu", ["x"], ["y"],
                                                                 name="/blocks0/act/Relu"))


def test_exact_pin_also_pins_derived_layers() -> None:
    graph = _graph(("/enc/norm/LayerNormalization", "LayerNormalization"),
                   ("/enc/MatMul", "MatMul"))
    pins, notes = layers.trtexec_layers(graph, {"/enc/norm/LayerNormalization": "fp32"})
    assert pins == [("/enc/norm/LayerNormalization", "fp32"),
                    ("/enc/norm/LayerNormalization_*", "fp32")]
    assert notes == []


def test_derived_wildcard_left_out_where_it_would_pin_another_node() -> None:
    # torch names a second MatMul "/attn/MatMul_1": "/attn/MatMul_*" would pin it too.
    graph = _graph(("/attn/MatMul", "MatMul"), ("/attn/MatMul_1", "MatMul"))
    pins, notes = layers.trtexec_layers(graph, {"/attn/MatMul": "fp32"})
    assert pins == [("/attn/MatMul", "fp32")]
    assert len(notes) == 1 and "/attn/MatMul_1" in notes[0]
    # Both pinned alike: the wildcard is safe again.
    pins, notes = layers.trtexec_layers(graph, {"/attn/MatMul": "fp32",
                                                "/attn/MatMul_1": "fp32"})
    assert ("/attn/MatMul_*", "fp32") in pins and notes == []


def test_layer_patterns_from_a_file(tmp_path: Path) -> None:
    model = helper.make_model(_graph(("/n/Softmax", "Softmax")),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    flags = FlagSet.from_mapping({"precision": "fp16", "precision_constraints": "obey",
                                  "layer_precisions": {"Softmax": "fp32"}})
    pins, outs, notes = layer_patterns(tmp_path / "m.onnx", flags)
    assert pins == {"/n/Softmax": "fp32", "/n/Softmax_*": "fp32"} and outs == {}
    assert notes == []


def test_python_api_pins_derived_layers_unless_they_are_nodes() -> None:
    pins = {"/enc/norm": "FLOAT"}
    nodes = frozenset({"/enc/norm", "/enc/MatMul", "/enc/MatMul_1"})
    assert _pinned_node("/enc/norm", pins, nodes) == "/enc/norm"
    assert _pinned_node("/enc/norm_2", pins, nodes) == "/enc/norm"
    assert _pinned_node("/enc/norm_x", pins, nodes) is None
    assert _pinned_node("/enc/MatMul_1", {"/enc/MatMul": "FLOAT"}, nodes) is None


def test_timing_cache_is_keyed_by_tensorrt_version_and_gpu() -> None:
    from sweep.builder.cache import timing_cache_name

    a = timing_cache_name("10.9.0", "gpu:NVIDIA H100 80GB HBM3")
    assert a == "timing-10.9.0-gpu-NVIDIA-H100-80GB-HBM3.cache"
    assert a != timing_cache_name("11.0.0", "gpu:NVIDIA H100 80GB HBM3")
    assert a != timing_cache_name("10.9.0", "gpu:NVIDIA A100-SXM4-80GB")
