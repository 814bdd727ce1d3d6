"""Resolve layer patterns (ONNX node names or op types, one optional '*') to node names.

trtexec's --layerPrecisions matches TensorRT layer names, which the ONNX parser takes from
ONNX node names; it knows nothing of op types. Expanding op-type patterns here, once, lets
the emulator and trtexec pin exactly the same nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

import onnx


def matches(pattern: str, node: onnx.NodeProto) -> bool:
    """True when ``pattern`` names the node, or its op type, with '*' as a wildcard."""
    return fnmatchcase(node.name, pattern) or fnmatchcase(node.op_type, pattern)


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
