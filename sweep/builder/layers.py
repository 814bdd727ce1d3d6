"""Resolve layer patterns (ONNX node names or op types, one optional '*') to node names,
and spell them for trtexec.

trtexec's --layerPrecisions matches TensorRT layer names, which the ONNX parser takes from
ONNX node names; it knows nothing of op types. Expanding op-type patterns here, once, lets
the emulator and trtexec pin exactly the same nodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import onnx


def _regex(pattern: str) -> re.Pattern[str]:
    # Only '*' is a wildcard, as in trtexec. fnmatch would read '[' ']' (common in node
    # names exported from module lists) as a character class and miss the node.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z",
                      re.DOTALL)


def matches(pattern: str, node: onnx.NodeProto) -> bool:
    """True when ``pattern`` names the node, or its op type, with '*' as a wildcard."""
    rx = _regex(pattern)
    return bool(rx.match(node.name) or rx.match(node.op_type))


def resolve(graph: onnx.GraphProto, patterns: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Node name -> precision; later patterns override earlier ones, as in trtexec.

    Nodes without a name cannot be addressed by TensorRT; they are skipped.
    """
    resolved: dict[str, str] = {}
    for pattern, precision in patterns:
        for node in graph.node:
            if node.name and matches(pattern, node):
                resolved[node.name] = precision
    return resolved


def unmatched(graph: onnx.GraphProto, patterns: Iterable[tuple[str, str]]) -> list[str]:
    """Patterns that name no node: almost always a typo worth failing on."""
    return [p for p, _ in patterns if not any(matches(p, n) for n in graph.node)]


def trtexec_layers(graph: onnx.GraphProto, resolved: Mapping[str, str]
                   ) -> tuple[list[tuple[str, str]], list[str]]:
    """``resolved`` (node -> precision) as trtexec layer patterns, and notes for the log.

    TensorRT's ONNX parser names the first layer of a node after the node and any further
    layers ``<node>_<N>`` (a LayerNormalization or a Softmax on some versions becomes
    several layers), so an exact node-name pin misses all but the first. Each node gets
    ``<node>_*`` too, unless another node of the graph is named ``<node>_...`` with a
    different pin: the wildcard would pin that node as well, so it is left out and the
    log says so. trtexec skips integer, bool and shape layers on wildcard matches only.
    """
    names = [n.name for n in graph.node if n.name]
    out: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, precision in resolved.items():
        out.append((name, precision))
        prefix = f"{name}_"
        clashes = [other for other in names if other.startswith(prefix)
                   and resolved.get(other) != precision]
        if "*" in name:
            continue
        if clashes:
            notes.append(
                f"layers TensorRT derives from node {name!r} ({prefix}<N>) are not pinned: "
                f"the pattern {prefix}* would also pin node(s) {clashes[:3]}"
                f"{' ...' if len(clashes) > 3 else ''}. Rename the nodes in the ONNX, or pin "
                "those too.")
        else:
            out.append((f"{prefix}*", precision))
    return out, notes
