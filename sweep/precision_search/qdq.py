"""The quantised nodes of a Q/DQ graph, and the same graph with some of them back in float.

A node is quantised when ModelOpt put a DequantizeLinear in front of one of its operands
(activation or weight) and its op type is one the recipe quantises (Conv, Gemm, MatMul:
``sweep.precision.realise.QUANTIZED_OPS``); a Slice or Concat that merely reads a shared DQ
output is not a choice of its own. Groups gather the nodes of one module (a block's
attention projections, its feed-forward pair, its convolution module), named by the path
the exporter gave them.

:func:`revert` is the ranking's cheap stand-in for "quantise again with this node
excluded": the node's operands are wired to the float tensors in front of their Q/DQ pairs
(weights stay fp32 initialisers behind a QuantizeLinear in ModelOpt's output), and every
other scale stays as calibrated. Excluding a node in ModelOpt calibrates the rest on the
same fp32 activations, so the two agree on every other node; whatever differs is caught by
the full-set probe of the real realisation that confirms each step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx

from sweep.errors import ConfigError

GRANULARITIES = ("node", "module")


@dataclass(frozen=True)
class Group:
    """What one revert keeps in float: one node, or the quantised nodes of one module."""

    name: str
    nodes: tuple[str, ...]
    op_types: tuple[str, ...]


def quantised_nodes(model: onnx.ModelProto, op_types: Iterable[str]) -> list[onnx.NodeProto]:
    """Nodes of ``op_types`` that read a DequantizeLinear output, in graph order."""
    wanted = set(op_types)
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n for n in model.graph.node if n.op_type in wanted and n.name and any(
        producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
        for i in n.input)]


def module_of(name: str) -> str:
    """``/blocks.0/attn/q/MatMul`` -> ``/blocks.0/attn``: the exporter's path without the
    layer and op parts. Names too short to have a module are their own group."""
    parts = name.split("/")
    return "/".join(parts[:-2]) if len(parts) > 3 else name


def groups(model: onnx.ModelProto, op_types: Iterable[str], granularity: str
           ) -> list[Group]:
    if granularity not in GRANULARITIES:
        raise ConfigError(f"--granularity {granularity!r}: expected one of "
                          f"{', '.join(GRANULARITIES)} for a quantised target.")
    nodes = quantised_nodes(model, op_types)
    if granularity == "node":
        return [Group(n.name, (n.name,), (n.op_type,)) for n in nodes]
    by_module: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        by_module.setdefault(module_of(n.name), []).append(n)
    return [Group(m, tuple(n.name for n in ns), tuple(dict.fromkeys(n.op_type for n in ns)))
            for m, ns in by_module.items()]


def revert(model: onnx.ModelProto, names: Sequence[str]) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` where the nodes ``names`` read the float tensors their Q/DQ pairs
    were made from. Returns the copy and how many operands were rewired (0: nothing of
    ``names`` is quantised in this graph)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    producer = {o: n for n in out.graph.node for o in n.output}
    wanted = set(names)
    rewired = 0
    for node in out.graph.node:
        if node.name not in wanted:
            continue
        for k, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # weights stored already quantised: no float copy to go back to
            node.input[k] = q.input[0]
            rewired += 1
    # Q/DQ pairs nobody reads any more are left in place: ONNX Runtime drops unused nodes
    # when it plans the session, and the graph stays valid.
    return out, rewired
