"""Which layers must stay FP32: the search's pure parts (no builds, no MLflow).

* :func:`candidates`: the nodes a reduced-precision flag set would run in fp16/bf16 and a
  ``layer_precisions`` pattern can pin, in topological order.
* :func:`shrink`: from "everything pinned", unpin groups of consecutive items while a probe
  still passes; a group that fails is split in two and each half tried alone. Polygraphy's
  ``debug precision`` bisects the *number* of layers kept in higher precision from one end
  of the network (a prefix or suffix); unpinning groups from anywhere instead converges on
  a small scattered set, at about 2 k log2(n / k) probes for k layers that matter out of n.
* :func:`patterns`: a set of pinned nodes as the fewest ``layer_precisions`` patterns
  (an op type where every node of that type is pinned, node names otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import onnx

from sweep.flags import FlagSet

T = TypeVar("T", bound=Hashable)

# What flags.py accepts in a pattern, minus the characters fnmatch reads as wildcards.
_PINNABLE = re.compile(r"^[A-Za-z0-9_./\-]+$")


@dataclass(frozen=True)
class Candidate:
    """A node that computes in the reduced precision unless pinned."""

    index: int
    name: str
    op_type: str


def candidates(model: onnx.ModelProto, precision: str) -> list[Candidate]:
    """Nodes that ``precision`` (weakly typed) would compute in fp16/bf16, topologically
    ordered. Left out: the shape subgraph and folded weights (TensorRT computes those in
    fp32 anyway), unnamed nodes and names a pattern cannot address exactly (TensorRT and
    the emulator can only pin by name or op type)."""
    from sweep.builder.emulate import plan

    emulation = plan(FlagSet(precision=precision), model)
    op_types = {n.op_type for n in model.graph.node}
    return [Candidate(step.index, step.name, step.op_type) for step in emulation.nodes
            if not step.shape and not step.weight and step.compute == precision
            and _PINNABLE.match(step.name) and step.name not in op_types]


def patterns(pinned: Iterable[Candidate], universe: Sequence[Candidate]) -> list[str]:
    """``pinned`` as patterns, in topological order: an op type when every candidate of
    that type is pinned (its other nodes are shape or weight nodes, which no pattern
    changes), else the node names."""
    chosen = {c.name for c in pinned}
    by_type: dict[str, list[Candidate]] = {}
    for c in universe:
        by_type.setdefault(c.op_type, []).append(c)
    whole = {op for op, nodes in by_type.items() if all(n.name in chosen for n in nodes)}
    out: list[str] = []
    for c in universe:
        if c.op_type in whole:
            if c.op_type not in out:
                out.append(c.op_type)
        elif c.name in chosen:
            out.append(c.name)
    return out


def shrink(items: Sequence[T], passes: Callable[[list[T]], bool]) -> list[T]:
    """A small subset of ``items`` that still passes, found by unpinning groups.

    ``passes(kept)`` probes the configuration where exactly ``kept`` stays pinned; the
    full ``items`` is assumed to pass. Every change to the kept set follows a passing probe
    of exactly that set, so the result has passed (or is ``items`` itself).
    """
    kept = list(items)

    def visit(group: list[T]) -> None:
        if not group:
            return
        leaving = set(group)
        trial = [x for x in kept if x not in leaving]
        if passes(trial):
            kept[:] = trial
            return
        if len(group) == 1:
            return
        middle = len(group) // 2
        visit(group[:middle])
        visit(group[middle:])

    visit(list(items))
    return kept
