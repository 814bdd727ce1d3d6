"""A typed ONNX made executable by ONNX Runtime's CPU provider, with its numbers kept.

The CPU provider has no bf16 kernels (a typed graph fails with "Could not find an
implementation for Conv(22)") and few fp16 ones, so every float16/bfloat16 tensor is
widened to float32 and, wherever the typed graph *stores* it in low precision, rounded
back through a ``Cast(to=FLOAT16|BFLOAT16) -> Cast(to=FLOAT)`` pair: round to nearest even,
ONNX Runtime's own conversion, which the CPU provider does implement. A node that computed
in bf16 now computes in fp32 on bf16-rounded inputs and stores a bf16-rounded output: the
storage precision of the engine, not its kernels' internal rounding (the emulator's rule
everywhere, sweep/builder/emulate.py). Low-precision weights become their exact float32
values. Q/DQ nodes are left as written: the CPU provider executes int8 Q/DQ.

A graph without low-precision tensors comes back unchanged (fp32 is bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LOW = (TensorProto.FLOAT16, TensorProto.BFLOAT16)
# Ops whose attribute names an output element type.
_TYPE_ATTRS = {"Cast": "to", "EyeLike": "dtype", "RandomNormal": "dtype",
               "RandomUniform": "dtype", "RandomNormalLike": "dtype",
               "RandomUniformLike": "dtype"}


@dataclass(frozen=True)
class Widened:
    tensors: int  # low-precision tensors now float32
    roundings: int  # Cast pairs inserted where the graph stores low precision
    weights: int  # low-precision initializers and constants widened

    @property
    def changed(self) -> bool:
        return bool(self.tensors or self.roundings or self.weights)


def _widen_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    values = numpy_helper.to_array(t).astype(np.float32)
    return numpy_helper.from_array(values, t.name)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        g = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # custom ops: declared types only
        g = model.graph
    out = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)
           if v.type.HasField("tensor_type")}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def widen(model: onnx.ModelProto, *, keep_io_types: bool = False
          ) -> tuple[onnx.ModelProto, Widened]:
    """``model`` with float16/bfloat16 widened to float32 and rounded where it is stored.

    ``keep_io_types`` (``trt.keep_io_types``): a low-precision graph input or output is the
    served interface's own type (an exporter typed it, as T-one's FP16 state), so it stays
    low precision at the boundary, widened on entry and rounded on exit, as a plan's I/O
    would be. Without it the graph's I/O became low precision in realisation while the
    client still speaks the model's float32, so the boundary is widened too.
    """
    types = _types(model)
    low = {name: t for name, t in types.items() if t in LOW}
    if not low:
        return model, Widened(0, 0, 0)
    graph = model.graph
    weights = 0
    for i, init in enumerate(graph.initializer):
        if init.data_type in LOW:
            graph.initializer[i].CopyFrom(_widen_tensor(init))
            weights += 1
    nodes: list[onnx.NodeProto] = []
    roundings = 0
    for node in graph.node:
        attr_name = _TYPE_ATTRS.get(node.op_type)
        for attr in node.attribute:
            if attr.name == attr_name and attr.i in LOW:
                attr.i = TensorProto.FLOAT  # computes in fp32; rounded below
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type in LOW:
                attr.t.CopyFrom(_widen_tensor(attr.t))
                weights += 1
        renamed = list(node.output)
        pairs = []
        for k, out in enumerate(node.output):
            if out and out in low and node.op_type != "Constant":
                wide = f"{out}__fp32"
                renamed[k] = wide
                rounded = f"{out}__{'bf16' if low[out] == TensorProto.BFLOAT16 else 'fp16'}"
                # Named after the tensor: a node with several outputs gets a pair each.
                pairs += [helper.make_node("Cast", [wide], [rounded], to=low[out],
                                           name=f"{out}__round"),
                          helper.make_node("Cast", [rounded], [out], to=TensorProto.FLOAT,
                                           name=f"{out}__widen")]
                roundings += 1
        del node.output[:]
        node.output.extend(renamed)
        nodes.append(node)
        nodes.extend(pairs)
    del graph.node[:]
    graph.node.extend(nodes)
    if keep_io_types:
        roundings += _keep_boundary(graph, low)
    rounded_inputs = []
    for value in graph.input:
        if value.type.tensor_type.elem_type in LOW and not keep_io_types:
            # keep_io_types=false: the client still sends float32 (the served interface is
            # the model's); the engine's input is rounded on arrival, as a cast would.
            kind = value.type.tensor_type.elem_type
            value.type.tensor_type.elem_type = TensorProto.FLOAT
            rounded_inputs.append((value.name, kind))
    for value in (*([] if keep_io_types else graph.output), *graph.value_info):
        if value.type.tensor_type.elem_type in LOW:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    for name, kind in rounded_inputs:
        wide, low_name = f"{name}__in", f"{name}__in_low"
        _rename(graph, name, wide)
        graph.node.insert(0, helper.make_node("Cast", [low_name], [wide], to=TensorProto.FLOAT,
                                              name=f"{name}__widen_in"))
        graph.node.insert(0, helper.make_node("Cast", [name], [low_name], to=kind,
                                              name=f"{name}__round_in"))
        roundings += 1
    # Types changed under the declared value_info: let ONNX Runtime infer them again.
    del graph.value_info[:]
    return model, Widened(len(low), roundings, weights)


def _keep_boundary(graph: onnx.GraphProto, low: dict[str, int]) -> int:
    """Low-precision graph inputs and outputs keep their type: Casts at the boundary."""
    kept = 0
    for value in graph.input:
        kind = value.type.tensor_type.elem_type
        if kind not in LOW:
            continue
        wide = f"{value.name}__in"
        _rename(graph, value.name, wide)
        graph.node.insert(0, helper.make_node("Cast", [value.name], [wide], to=TensorProto.FLOAT,
                                              name=f"{value.name}__widen_in"))
        kept += 1
    for value in graph.output:
        kind = low.get(value.name)
        if kind is None:
            continue
        inner = f"{value.name}__out"
        _rename(graph, value.name, inner, outputs=True)
        graph.node.append(helper.make_node("Cast", [inner], [value.name], to=kind,
                                           name=f"{value.name}__round_out"))
        kept += 1
    return kept


def _rename(graph: onnx.GraphProto, old: str, new: str, *, outputs: bool = False) -> None:
    """Every node that reads ``old`` (and, with ``outputs``, writes it) uses ``new``."""
    for node in graph.node:
        for k, inp in enumerate(node.input):
            if inp == old:
                node.input[k] = new
        if outputs:
            for k, out in enumerate(node.output):
                if out == old:
                    node.output[k] = new
