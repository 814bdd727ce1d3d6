"""CPU builder: emulate a TensorRT flag set by rewriting the ONNX graph for ONNX Runtime.

On a host without a GPU (and in CI) an "engine" is the ONNX graph rewritten so that ONNX
Runtime stores every tensor in the precision TensorRT would store it in under the flag
set. One function, :func:`plan`, maps (flag set, graph) to an :class:`EmulationPlan` (data
in, data out, unit-tested as such); :func:`rewrite` applies a plan; :class:`EmulateBuilder`
is the ``Builder`` that loads, plans, rewrites, checks and writes the artefacts.

What is emulated, and how
-------------------------
* Storage precision, not kernels. Every node still computes in fp32 inside ONNX Runtime;
  what changes is the precision of the tensors it reads and writes. A node that
  *computes* in fp16/bf16 reads its float inputs rounded to that precision (TensorRT
  inserts a reformat in front of a half-precision kernel) and *stores* its float outputs
  rounded to its output precision. Rounding is a ``Cast(to=FLOAT16|BFLOAT16)`` followed by
  ``Cast(to=FLOAT)``: round-to-nearest-even with overflow to inf, exactly numpy's /
  ml_dtypes' conversion. Rounding inside a kernel (fp16 accumulation in a reduction, a
  Softmax's exp in half) is not emulated, so the emulator is a lower bound on a real
  half-precision engine's error, not a prediction of it.
* Weakly typed, ``precision=fp16|bf16``: every unpinned node computes and stores in that
  precision. Weights (initializers and float ``Constant`` nodes, which TensorRT's ONNX
  parser also imports as weights) are rounded per consumer: TensorRT converts weights to
  the precision of the layer that uses them, so an fp32-pinned layer keeps fp32 weights.
  Their stored values are rounded with numpy instead of inserting Cast pairs: numerically
  identical (the same round-to-nearest-even conversion) and free at run time.
* ``layer_precisions`` (under ``precision_constraints`` prefer or obey) set what matched
  nodes compute in (and, by default, store); ``layer_output_types`` set what they store.
  A pinned fp32 node writes fp32; an fp16 node that reads its output still reads it
  rounded, because that consumer computes in fp16. "prefer" and "obey" are the same
  here: TensorRT may ignore "prefer" where it has no kernel in the requested precision,
  the emulator always honours it.
* ``tf32`` rounds the multiplicands (not the bias) of fp32-computed MatMul, Gemm, Conv,
  ConvTranspose, Einsum, RNN/GRU/LSTM and ONNX Runtime's Fused* variants to TF32 (10
  explicit mantissa bits, round to nearest even). ONNX has no TF32 type, so activations go
  through Veltkamp splitting in float32, exact in IEEE arithmetic:
  ``c = x * (2^13 + 1); hi = c - (c - x)`` is ``x`` rounded to 11 significant bits, ties
  to even, for every normal ``|x| < FLT_MAX / 8193 (~4.1e34)`` (Mul, Sub, Sub). Beyond that
  ``c`` overflows and the result is NaN (inf inputs too); a guard (``IsInf(c) ? x : hi``)
  was measured at 3.5x the cost of the split itself and is left out: a matmul input that
  large already means an inf/NaN product, and no fp16/bf16 run of such a model survives.
  Subnormal inputs keep 11 significant bits rather than TF32's fixed subnormal grid (a
  difference below 2^-136). Weights get the same arithmetic in numpy.
* Strongly typed: the ONNX's own types, no rounding; only tf32 applies, to float32
  multiplicands.
* Untouched everywhere: integer/bool tensors, tensors of unknown type, tensors an ONNX
  already types as float16/bfloat16 (only float32 tensors are re-rounded), and the shape
  subgraph (nodes whose outputs only feed shape operands such as Reshape's shape or
  Slice's starts; TensorRT computes those as shape tensors, not in the network precision).
  Nodes that compute only from weights (an exporter's Identity of a tied weight) are
  folded by TensorRT at build time in fp32; they are weights here too.
* Value-preserving ops (Reshape, Transpose, Concat, Slice, Relu, Max, Where, ...) whose
  inputs are already in their output precision get no output rounding: their outputs are
  exactly representable already, so skipping the Cast pair changes no bit and saves a pass.
* int8/fp8 are refused: they need calibration or quantisation scales that only a real
  TensorRT build (``builder=trtexec`` on a GPU host) has.

Optimisation level
------------------
TensorRT's ``builderOptimizationLevel`` trades build time for how hard the builder
searches (0: fastest build, few tactics; 3: default; 5: exhaustive). ONNX Runtime's graph
optimisation level is the nearest knob with the same direction (more rewrite work at
session creation, usually a faster graph):

====================  =========================  =====================================
``opt_level``         ONNX Runtime level         why
====================  =========================  =====================================
0                     ``ORT_DISABLE_ALL``        no graph work at all, like level 0
1, 2                  ``ORT_ENABLE_BASIC``       constant folding, redundant-node
                                                 removal, simple fusions (Conv+BN,
                                                 MatMul+Add -> Gemm)
3 (TensorRT default)  ``ORT_ENABLE_EXTENDED``    adds complex fusions (GELU, LayerNorm,
                                                 SkipLayerNorm, attention), the
                                                 analogue of TensorRT's layer fusion
4, 5                  ``ORT_ENABLE_ALL``         adds hardware-specific layout
                                                 transforms (NCHWc): the extra search
====================  =========================  =====================================

ONNX Runtime's fusions can change fp32 results in the last bits, so an fp32 baseline is
compared at the same ``opt_level``. The level travels in ``Engine.runtime`` (the server
side creates the session), with ``intra_op_num_threads`` (default 1: the server runs many
instances side by side).
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import sweep
from sweep import keys
from sweep.builder import layer_info, layers
from sweep.builder.widen import widen
from sweep.engine import Engine, EngineFormat
from sweep.errors import BuildError, DeadlineExpired, FlagSetError, ModelError
from sweep.flags import FlagSet
from sweep.model import read_onnx

__all__ = [
    "ORT_LEVELS",
    "EmulateBuilder",
    "EmulationPlan",
    "NodePlan",
    "ort_level",
    "plan",
    "rewrite",
    "round_array",
]

ORT_LEVELS: Mapping[int, str] = {
    0: "ORT_DISABLE_ALL",
    1: "ORT_ENABLE_BASIC",
    2: "ORT_ENABLE_BASIC",
    3: "ORT_ENABLE_EXTENDED",
    4: "ORT_ENABLE_ALL",
    5: "ORT_ENABLE_ALL",
}

FP32, FP16, BF16, TF32 = "fp32", "fp16", "bf16", "tf32"
_EMULATED = (FP32, FP16, BF16)
_CAST_TO: dict[str, int] = {FP16: TensorProto.FLOAT16, BF16: TensorProto.BFLOAT16}
_ELEM_PRECISION: dict[int, str] = {TensorProto.FLOAT: FP32, TensorProto.FLOAT16: FP16,
                   TensorProto.BFLOAT16: BF16}
# a is exactly representable in b. fp16 and bf16 are incomparable (range vs mantissa);
# both fit TF32 (11 and 8 significant bits, exponent range within fp32's).
_SUBSET = {(FP16, FP16), (BF16, BF16), (TF32, TF32), (FP16, TF32), (BF16, TF32),
           (FP32, FP32), (FP16, FP32), (BF16, FP32), (TF32, FP32)}

# Multiplicand inputs that TF32 tensor cores read; biases and accumulation stay fp32.
_TF32_OPERANDS: Mapping[str, tuple[int, ...] | None] = {
    "MatMul": (0, 1), "Gemm": (0, 1), "Conv": (0, 1), "ConvTranspose": (0, 1),
    "FusedMatMul": (0, 1), "FusedGemm": (0, 1), "FusedConv": (0, 1),
    "Einsum": None,  # every input is a multiplicand
    "RNN": (0, 1, 2, 5), "GRU": (0, 1, 2, 5), "LSTM": (0, 1, 2, 5),  # X, W, R, initial_h
}
_VELTKAMP_FACTOR = np.float32(2**13 + 1)  # splits 24 significant bits into 11 + 13

# Inputs that carry shapes, axes or counts, not data: what feeds only these is the shape
# subgraph, computed by TensorRT as shape tensors rather than in the network precision.
_SHAPE_OPERANDS: Mapping[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4),
    "ConstantOfShape": (0,), "Range": (0, 1, 2), "Resize": (1, 2, 3), "Upsample": (1,),
    "Pad": (1, 3), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "TopK": (1,),
    "OneHot": (1,), "CumSum": (1,), "Trilu": (1,), "ReduceSum": (1,), "ReduceMean": (1,),
    "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL1": (1,),
    "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
}

# Outputs are elements (or max/min/negation) of the inputs: representable in any format
# the inputs are representable in, so rounding them again is a no-op.
_VALUE_PRESERVING = frozenset({
    "Identity", "Dropout", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
    "Slice", "Split", "Concat", "Gather", "GatherElements", "GatherND", "Expand", "Tile",
    "Pad", "DepthToSpace", "SpaceToDepth", "Compress", "Where", "Max", "Min", "Clip",
    "Relu", "Abs", "Neg", "Sign", "MaxPool", "ReduceMax", "ReduceMin",
})

_SUFFIX = "__emul"


# -- the plan: flag set + graph -> data ----------------------------------------------------

@dataclass(frozen=True)
class NodePlan:
    """What the emulator does around one node.

    ``compute``: precision its float inputs are read in; ``store``: precision its float
    outputs are stored in (``None``: no float output). ``pinned``/``output_pinned``: the
    ``layer_precisions``/``layer_output_types`` pattern that set them. ``round_inputs``:
    (input index, fp16|bf16|tf32) read through a rounding; ``round_outputs``: output
    indices rounded to ``store`` (empty when already exact). ``tf32``: some input gets
    TF32 rounding. ``shape``: part of the shape subgraph, left alone. ``weight``: a
    ``Constant`` or a node computing only from weights (an exporter's Identity of a tied
    weight, a Transpose of one): TensorRT folds these at build time in fp32, so they are
    rounded per consumer like an initializer, and have no ``store``.
    """

    index: int
    name: str
    op_type: str
    compute: str
    store: str | None
    pinned: str | None = None
    output_pinned: str | None = None
    tf32: bool = False
    shape: bool = False
    weight: bool = False
    round_inputs: tuple[tuple[int, str], ...] = ()
    round_outputs: tuple[int, ...] = ()

    def record(self) -> dict[str, Any]:
        """One row of ``layer_precisions.json``."""
        return {"name": self.name, "op_type": self.op_type, "stored": self.store,
                "compute": self.compute, "pinned": bool(self.pinned or self.output_pinned),
                "pinned_by": self.pinned or self.output_pinned, "tf32": self.tf32,
                "shape": self.shape, "weight": self.weight}


@dataclass(frozen=True)
class EmulationPlan:
    """Everything the rewrite and the runtime need; no graph objects, only names."""

    label: str
    strongly_typed: bool
    precision: str
    nodes: tuple[NodePlan, ...]
    # (weight tensor, precision): stored values rounded with numpy, per consumer precision.
    initializers: tuple[tuple[str, str], ...]
    graph_optimization_level: str
    warnings: tuple[str, ...] = field(default=())

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def pinned(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if n.pinned or n.output_pinned)

    def stored_counts(self) -> dict[str, Counter[str]]:
        """op type -> Counter of stored precisions (nodes with float outputs only)."""
        out: dict[str, Counter[str]] = {}
        for n in self.nodes:
            if n.store is not None:
                out.setdefault(n.op_type, Counter())[n.store] += 1
        return out


def ort_level(opt_level: int) -> str:
    """TensorRT builderOptimizationLevel -> ONNX Runtime GraphOptimizationLevel name."""
    try:
        return ORT_LEVELS[int(opt_level)]
    except KeyError:
        raise FlagSetError(
            f"trt.opt_level={opt_level} is out of range; TensorRT's builderOptimizationLevel "
            "takes 0..5."
        ) from None


def plan(flags: FlagSet, model: onnx.ModelProto) -> EmulationPlan:
    """Map a flag set and a graph to the emulation plan; raises FlagSetError when the flag
    set cannot be emulated (int8/fp8, a layer pattern that names no node)."""
    flags.validate()
    _refuse_gpu_only(flags)
    if flags.strongly_typed:
        _require_quantised_graph(flags, model)
    else:
        _refuse_quantised(flags)
    graph = model.graph
    warnings = _check_patterns(graph, flags)
    if BF16 in {flags.precision, *(p for _, p in flags.layer_precisions),
                *(p for _, p in flags.layer_output_types)}:
        _require_opset(model, 13, "bf16 Cast")

    types, type_warnings = _tensor_types(model)
    warnings += type_warnings
    shape_nodes = _shape_subgraph(graph)
    weights, weight_nodes = _weights(graph, shape_nodes)
    level = ort_level(flags.opt_level)

    stored: dict[str, str] = {}  # tensor -> precision it holds, when not fp32
    nodes: list[NodePlan] = []
    init_rounding: dict[tuple[str, str], None] = {}
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        float_in = [k for k, t in enumerate(node.input) if t and types.get(t) == TensorProto.FLOAT]
        float_out = [k for k, t in enumerate(node.output)
                     if t and types.get(t) == TensorProto.FLOAT]
        if i in shape_nodes:
            nodes.append(NodePlan(i, name, node.op_type, FP32, FP32 if float_out else None,
                                  shape=True))
            continue
        if i in weight_nodes:
            nodes.append(NodePlan(i, name, node.op_type, FP32, None, weight=True))
            continue
        if flags.strongly_typed:
            step = _typed_node(i, name, node, types, float_in, flags.tf32)
        else:
            step = _weak_node(i, name, node, flags, float_in, float_out, stored)
        init_rounding.update({(node.input[k], want): None for k, want in step.round_inputs
                              if node.input[k] in weights})
        nodes.append(step)
    return EmulationPlan(
        label=flags.label, strongly_typed=flags.strongly_typed, precision=flags.precision,
        nodes=tuple(nodes), initializers=tuple(init_rounding), graph_optimization_level=level,
        warnings=tuple(warnings),
    )


def _check_patterns(graph: onnx.GraphProto, flags: FlagSet) -> list[str]:
    """Fail on a pattern that names nothing; warn on one that names only unnamed nodes."""
    warnings = []
    for where, patterns in (("trt.layer_precisions", flags.layer_precisions),
                            ("trt.layer_output_types", flags.layer_output_types)):
        missing = layers.unmatched(graph, patterns)
        if missing:
            raise FlagSetError(
                f"{where}: pattern(s) {missing} match no node name or op type of the ONNX "
                "graph (almost always a typo). Patterns match node names such as "
                "'/encoder/layers.0/norm/LayerNormalization' or op types such as "
                "'Softmax', with at most one '*'."
            )
        warnings += [f"{where}: pattern {p!r} matches only unnamed nodes, which TensorRT "
                     "cannot address; nothing pinned"
                     for p, _ in patterns if not layers.resolve(graph, [(p, FP32)])]
    return warnings


def _weak_node(i: int, name: str, node: onnx.NodeProto, flags: FlagSet, float_in: list[int],
               float_out: list[int], stored: dict[str, str]) -> NodePlan:
    """Weakly typed: compute in the pinned or global precision, store in the output type
    or the compute precision. ``stored`` (tensor -> precision it holds, absent: fp32) is
    read for the inputs and updated with the outputs."""
    pinned = _first_match(node, flags.layer_precisions)
    out_pinned = _first_match(node, flags.layer_output_types)
    compute = pinned[1] if pinned else flags.precision
    store = out_pinned[1] if out_pinned else compute
    rounds: list[tuple[int, str]] = []
    read: list[str] = []  # the precision each float input is read in
    for k in float_in:
        held = stored.get(node.input[k], FP32)
        want = compute
        if compute == FP32 and flags.tf32 and _is_tf32_operand(node.op_type, k):
            want = TF32
        if (held, want) in _SUBSET:
            read.append(held)
        else:
            rounds.append((k, want))
            read.append(want)
    exact = (node.op_type in _VALUE_PRESERVING and bool(read)
             and all((p, store) in _SUBSET for p in read))
    if store != FP32:
        stored.update({node.output[k]: store for k in float_out})
    return NodePlan(
        i, name, node.op_type, compute, store if float_out else None,
        pinned=pinned[0] if pinned else None,
        output_pinned=out_pinned[0] if out_pinned else None,
        tf32=any(p == TF32 for _, p in rounds),
        round_inputs=tuple(rounds),
        round_outputs=tuple(float_out) if store != FP32 and not exact else (),
    )


def _refuse_gpu_only(flags: FlagSet) -> None:
    """What only a real TensorRT decides: refused with the reason, never approximated."""
    if flags.build_route or flags.tunes_routes:
        raise FlagSetError(
            "builder=emulate cannot build trt.build_route/trt.tune_build_routes: a build route "
            "sets knobs of TensorRT's own compiler (the Global Performance Tuner, TensorRT "
            "11.1+), which ONNX Runtime does not have, and a route search times each route on "
            "the GPU. Use builder=trtexec on a GPU host, or plan it with builder=trtexec "
            "builder.dry_run=true builder.tensorrt_version=11.4.")
    if flags.qdq_placement == "autotune":
        raise FlagSetError(
            "builder=emulate cannot build trt.qdq_placement=autotune: ModelOpt Autotune places "
            "Q/DQ nodes by the latency TensorRT measures for each placement on the GPU, so "
            "there is no placement to execute without TensorRT. Use builder=trtexec on a GPU "
            "host, or plan it with builder.dry_run=true.")


def _require_quantised_graph(flags: FlagSet, model: onnx.ModelProto) -> None:
    """Strongly typed int8/fp8: the precision is the graph's Q/DQ nodes, which ONNX
    Runtime executes as written; a graph without them cannot be an int8/fp8 engine."""
    if flags.precision in ("int8", "fp8") and not any(
            n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise FlagSetError(
            f"trt.strongly_typed=true with trt.precision={flags.precision}: the ONNX has no "
            "QuantizeLinear/DequantizeLinear nodes to execute, so it would run in fp32. "
            "Realise the flag set in the graph first (sweep/precision/).")


def _refuse_quantised(flags: FlagSet) -> None:
    wanted = {flags.precision} | {p for _, p in flags.layer_precisions} | \
        {p for _, p in flags.layer_output_types}
    bad = sorted(wanted - set(_EMULATED))
    if bad:
        raise FlagSetError(
            f"builder=emulate cannot emulate weakly typed {'/'.join(bad)}: int8 and fp8 "
            "engines need calibration or quantisation (Q/DQ) scales, which a weak flag set "
            "leaves to TensorRT. Realise it in the graph instead (trt.strongly_typed=true: "
            "Q/DQ nodes calibrated on streamed audio), or use builder=trtexec on a GPU host."
        )


def _require_opset(model: onnx.ModelProto, minimum: int, what: str) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < minimum:
        raise ModelError(
            f"the ONNX model uses opset {opset}; emulating {what} needs opset >= {minimum}. "
            "Re-export with a newer opset (T-one and the demo use 17)."
        )


def _first_match(node: onnx.NodeProto, patterns: Iterable[tuple[str, str]]
                 ) -> tuple[str, str] | None:
    """The (pattern, precision) that applies to the node: the last match wins, as in
    trtexec. Unnamed nodes cannot be addressed by TensorRT (see layers.resolve)."""
    hit = None
    if node.name:
        for pattern, precision in patterns:
            if layers.matches(pattern, node):
                hit = (pattern, precision)
    return hit


def _is_tf32_operand(op_type: str, index: int) -> bool:
    if op_type not in _TF32_OPERANDS:
        return False
    operands = _TF32_OPERANDS[op_type]
    return operands is None or index in operands


def _typed_node(i: int, name: str, node: onnx.NodeProto, types: Mapping[str, int],
                float_in: list[int], tf32: bool) -> NodePlan:
    """Strongly typed: the ONNX's own types; TF32 on float32 multiplicands only."""
    out_types = [types[t] for t in node.output if types.get(t) in _ELEM_PRECISION]
    store = _ELEM_PRECISION[out_types[0]] if out_types else None
    rounds = tuple((k, TF32) for k in float_in if tf32 and _is_tf32_operand(node.op_type, k))
    return NodePlan(i, name, node.op_type, store or FP32, store, tf32=bool(rounds),
                    round_inputs=rounds)


def _tensor_types(model: onnx.ModelProto) -> tuple[dict[str, int], list[str]]:
    """Element type of every tensor we can type; unknown ones are left alone."""
    warnings: list[str] = []
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # a custom op can defeat inference; fall back on what's declared
        warnings.append(f"shape inference failed ({type(exc).__name__}: {exc}); using the "
                        "declared types only")
        inferred = model
    g = inferred.graph
    types: dict[str, int] = {}
    for v in (*g.input, *g.output, *g.value_info):
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant" and node.output and node.output[0] not in types:
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
                elif attr.name in ("value_float", "value_floats"):
                    types[node.output[0]] = TensorProto.FLOAT
    untyped = [t for n in g.node for t in n.output if t and t not in types]
    if untyped:
        warnings.append(f"{len(untyped)} tensor(s) of unknown type left unrounded, e.g. "
                        f"{untyped[:3]}")
    return types, warnings


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for i, node in enumerate(graph.node):
        for k, t in enumerate(node.input):
            if t:
                out.setdefault(t, []).append((i, k))
    return out


def _shape_subgraph(graph: onnx.GraphProto) -> set[int]:
    """Nodes whose every output feeds only shape operands or other shape nodes."""
    consumers = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    shape: set[int] = set()
    for i in range(len(graph.node) - 1, -1, -1):  # ONNX nodes are topologically sorted
        node = graph.node[i]
        outs = [t for t in node.output if t]
        if not outs or any(t in graph_outputs for t in outs):
            continue
        uses = [u for t in outs for u in consumers.get(t, [])]
        if uses and all(j in shape or k in _SHAPE_OPERANDS.get(graph.node[j].op_type, ())
                        for j, k in uses):
            shape.add(i)
    return shape


def _weights(graph: onnx.GraphProto, shape_nodes: set[int]) -> tuple[set[str], set[int]]:
    """Weight tensors whose values numpy can round (initializers that are not overridable
    inputs, Constant nodes with a tensor value), and the nodes that only compute weights
    (Constants, and nodes all of whose inputs are weights): what TensorRT imports as
    weights and folds at build time."""
    inputs = {i.name for i in graph.input}
    stored = {i.name for i in graph.initializer if i.name not in inputs}
    folded = set(stored)
    nodes: set[int] = set()
    for i, node in enumerate(graph.node):
        if i in shape_nodes or node.op_type.startswith("Random"):
            continue
        if node.op_type == "Constant":
            if any(a.name == "value" for a in node.attribute):
                stored.add(node.output[0])
            folded.update(node.output)
            nodes.add(i)
        elif node.input and all(t in folded for t in node.input if t):
            folded.update(t for t in node.output if t)
            nodes.add(i)
    return stored, nodes


# -- numerics -------------------------------------------------------------------------------

def round_array(values: np.ndarray, precision: str) -> np.ndarray:
    """float32 values rounded to fp16/bf16/tf32 and returned as float32, bit-identical to
    what the inserted nodes compute at run time."""
    x = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if precision == FP16:
            return x.astype(np.float16).astype(np.float32)
        if precision == BF16:
            return x.astype(ml_dtypes.bfloat16).astype(np.float32)
        if precision == TF32:
            c = x * _VELTKAMP_FACTOR
            return c - (c - x)
    if precision == FP32:
        return x
    raise ValueError(f"unknown precision {precision!r}")


# -- the rewrite: plan -> graph -----------------------------------------------------------

@dataclass
class RewriteStats:
    cast_pairs_after: int = 0  # producer side: a node's outputs stored in fp16/bf16
    cast_pairs_before: int = 0  # consumer side: inputs read in fp16/bf16
    tf32_splits: int = 0  # Veltkamp splits of activations
    weights_rounded: int = 0  # initializers/constants rounded in their stored values
    weights_copied: int = 0  # ... of which kept a copy because consumers disagreed
    nodes_before: int = 0
    nodes_after: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Names:
    """Fresh tensor/node names that never collide with the graph's own."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.used = {t for n in graph.node for t in (*n.input, *n.output)}
        self.used |= {i.name for i in graph.initializer} | {i.name for i in graph.input}
        self.used |= {n.name for n in graph.node}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


def rewrite(model: onnx.ModelProto, emulation: EmulationPlan
            ) -> tuple[onnx.ModelProto, RewriteStats]:
    """A copy of ``model`` that stores tensors as the plan says."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    stats = RewriteStats(nodes_before=len(graph.node))
    names = _Names(graph)
    rounded = _round_weights(graph, emulation, names, stats)
    new_nodes: list[onnx.NodeProto] = []
    if [(s.index, s.op_type) for s in emulation.nodes] != \
            [(i, n.op_type) for i, n in enumerate(graph.node)]:
        raise ValueError("the emulation plan was made for another graph")
    for node, step in zip(list(graph.node), emulation.nodes, strict=True):
        for k, precision in step.round_inputs:
            src = node.input[k]
            key = (src, precision)
            if key not in rounded:
                rounded[key] = names.fresh(f"{src}{_SUFFIX}_{precision}")
                new_nodes += _rounding_nodes(src, rounded[key], precision, names)
                if precision == TF32:
                    stats.tf32_splits += 1
                else:
                    stats.cast_pairs_before += 1
            node.input[k] = rounded[key]
        new_nodes.append(node)
        for k in step.round_outputs:
            assert step.store is not None
            # The node writes a raw tensor; the rounding takes over the original name, so
            # every consumer and graph output sees the stored value under its old name.
            original = node.output[k]
            raw = names.fresh(f"{original}{_SUFFIX}_raw")
            node.output[k] = raw
            new_nodes += _rounding_nodes(raw, original, step.store, names)
            stats.cast_pairs_after += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    stats.nodes_after = len(graph.node)
    return out, stats


def _round_weights(graph: onnx.GraphProto, emulation: EmulationPlan, names: _Names,
                   stats: RewriteStats) -> dict[tuple[str, str], str]:
    """Round weight values with numpy; in place when every reader wants the same rounding,
    else as a copy. Returns (tensor, precision) -> tensor holding the rounded values."""
    wanted: dict[str, set[str]] = {}
    for name, precision in emulation.initializers:
        wanted.setdefault(name, set()).add(precision)
    readers: dict[str, set[str | None]] = {}
    for node, step in zip(graph.node, emulation.nodes, strict=True):
        how = dict(step.round_inputs)
        for k, t in enumerate(node.input):
            if t in wanted:
                readers.setdefault(t, set()).add(how.get(k))
    subgraph_refs = _subgraph_references(graph)
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    rounded: dict[tuple[str, str], str] = {}
    graph_outputs = {o.name for o in graph.output}
    for name, precisions in wanted.items():
        proto = inits[name] if name in inits else _constant_value(constants[name])
        values = numpy_helper.to_array(proto)
        shared = (readers.get(name, set()) != precisions or len(precisions) > 1
                  or name in subgraph_refs or name in graph_outputs)
        for precision in sorted(precisions):
            new = round_array(values, precision)
            stats.weights_rounded += 1
            if shared:
                target = names.fresh(f"{name}{_SUFFIX}_{precision}")
                graph.initializer.append(numpy_helper.from_array(new, target))
                stats.weights_copied += 1
            else:
                target = name
                proto.CopyFrom(numpy_helper.from_array(new, proto.name))
            rounded[(name, precision)] = target
    return rounded


def _constant_value(node: onnx.NodeProto) -> TensorProto:
    return next(a.t for a in node.attribute if a.name == "value")


def _subgraph_references(graph: onnx.GraphProto) -> set[str]:
    refs: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                refs |= {t for n in sub.node for t in n.input}
                refs |= _subgraph_references(sub)
    return refs


def _rounding_nodes(src: str, dst: str, precision: str, names: _Names
                    ) -> list[onnx.NodeProto]:
    doc = "trt-sweep emulate: storage rounding"
    if precision in _CAST_TO:
        mid = names.fresh(f"{src}{_SUFFIX}_{precision}_narrow")
        return [
            helper.make_node("Cast", [src], [mid], to=_CAST_TO[precision],
                             name=names.fresh(f"emulate/{src}/to_{precision}"), doc_string=doc),
            helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT,
                             name=names.fresh(f"emulate/{src}/from_{precision}"),
                             doc_string=doc),
        ]
    if precision == TF32:
        # Veltkamp split (see module docstring); the constant is a node so the rewrite
        # needs no shared initializer bookkeeping.
        k, c, d = (names.fresh(f"{src}{_SUFFIX}_tf32_{s}") for s in ("k", "c", "d"))
        base = f"emulate/{src}/tf32"
        factor = numpy_helper.from_array(np.array(_VELTKAMP_FACTOR, np.float32), k)
        return [
            helper.make_node("Constant", [], [k], value=factor, name=names.fresh(f"{base}_k")),
            helper.make_node("Mul", [src, k], [c], name=names.fresh(f"{base}_mul")),
            helper.make_node("Sub", [c, src], [d], name=names.fresh(f"{base}_sub1")),
            helper.make_node("Sub", [c, d], [dst], name=names.fresh(f"{base}_sub2")),
        ]
    raise ValueError(f"no rounding for {precision!r}")


# -- the builder ----------------------------------------------------------------------------

class _BuildLog:
    """build.log, written as the build goes so it exists whatever happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("w", encoding="utf-8")
        self.timings: dict[str, float] = {}

    def line(self, text: str = "") -> None:
        self._file.write(text + "\n")
        self._file.flush()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.line(f"[{name}] ...")
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start
            self.line(f"[{name}] {self.timings[name]:.3f} s")

    def close(self) -> None:
        self._file.close()


class EmulateBuilder:
    """Builder ``emulate``: an ONNX Runtime graph that stores tensors as TensorRT would."""

    name = "emulate"

    def __init__(self, intra_op_num_threads: int = 1, check_session: bool = True) -> None:
        if intra_op_num_threads < 0:
            raise FlagSetError(
                f"builder.intra_op_num_threads={intra_op_num_threads}; expected 0 (ONNX "
                "Runtime's default: all cores) or a positive thread count."
            )
        self.intra_op_num_threads = int(intra_op_num_threads)
        self.check_session = check_session

    def version(self) -> str:
        import onnxruntime

        return (f"emulate-{sweep.__version__}+ort{onnxruntime.__version__}"
                f"+src{source_digest()}")

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log = _BuildLog(workdir / "build.log")
        start = time.perf_counter()
        try:
            return self._build(Path(onnx_path), flags, workdir, log, start)
        except DeadlineExpired as exc:
            log.line(f"FAILED: {exc}")
            raise BuildError(f"emulate build of {onnx_path} with {flags.label} failed: {exc}. "
                             f"See {log.path}.", log.path) from None
        except FlagSetError as exc:
            # The flag set itself cannot be emulated: a config problem, reported as such
            # (errors.FlagSetError covers "TensorRT or the emulator would reject").
            log.line(f"FAILED: {exc}")
            raise
        except Exception as exc:
            log.line(f"FAILED: {type(exc).__name__}: {exc}")
            log.line(traceback.format_exc())
            raise BuildError(
                f"emulate build of {onnx_path} with {flags.label} failed: "
                f"{type(exc).__name__}: {exc}. See {log.path}.", log.path,
            ) from exc
        finally:
            log.close()

    def _build(self, onnx_path: Path, flags: FlagSet, workdir: Path, log: _BuildLog,
               start: float) -> Engine:
        log.line(f"builder: {self.version()}")
        log.line(f"onnx: {onnx_path}")
        log.line(f"flag set: {flags.label} ({flags.digest})")
        log.line(json.dumps(flags.as_dict(), indent=2, sort_keys=True))
        with log.stage("load"):
            model = read_onnx(onnx_path)
        widened = None
        # What the typed graph runs in, read before widening erases its types.
        typed_layers = layer_info.graph_layers(model) if flags.strongly_typed else None
        if flags.strongly_typed:
            with log.stage("widen"):
                model, widened = widen(model, keep_io_types=flags.keep_io_types)
            if widened.changed:
                log.line(f"typed graph widened for ONNX Runtime's CPU provider: "
                         f"{widened.tensors} fp16/bf16 tensors as fp32, {widened.roundings} "
                         f"stores rounded back, {widened.weights} weights widened")
        with log.stage("plan"):
            emulation = plan(flags, model)
        for w in emulation.warnings:
            log.line(f"warning: {w}")
        with log.stage("rewrite"):
            rewritten, stats = rewrite(model, emulation)
        engine_path = workdir / "model.onnx"
        with log.stage("save"):
            onnx.save(rewritten, str(engine_path))
        with log.stage("check"):
            onnx.checker.check_model(str(engine_path))
        runtime = {"graph_optimization_level": emulation.graph_optimization_level,
                   "intra_op_num_threads": self.intra_op_num_threads}
        if self.check_session:
            with log.stage("session"):
                try:
                    _load_session(engine_path, runtime)
                except Exception as exc:
                    if not flags.strongly_typed:
                        raise
                    # A typed ONNX can hold what no CPU kernel runs (a TensorRT plugin, a
                    # type ONNX Runtime lacks): refused with the reason, never faked.
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                        type(exc).__name__
                    raise FlagSetError(
                        f"builder=emulate cannot execute the typed ONNX {onnx_path} on ONNX "
                        f"Runtime's CPU provider: {reason}. Build it with builder=trtexec on "
                        "a GPU host (or plan it with builder.dry_run=true).") from exc
        artifacts = _write_reports(workdir, flags, emulation, runtime)
        realised = typed_layers or layer_info.Realised(
            "emulator graph", [(n.name, n.op_type, n.store) for n in emulation.nodes
                               if not n.shape and not n.weight])
        realised_metrics, realised_runtime, realised_files = layer_info.report(
            flags, realised, onnx_path, workdir)
        runtime_record = {**runtime, **realised_runtime}
        artifacts += realised_files
        seconds = time.perf_counter() - start
        _log_summary(log, emulation, stats, seconds)
        metrics = {f"emu_{k}": float(v) for k, v in stats.as_dict().items()}
        metrics.update({f"emu_{k}_seconds": v for k, v in log.timings.items()})
        for precision, count in Counter(n.store for n in emulation.nodes
                                        if n.store is not None).items():
            metrics[f"emu_nodes_{precision}"] = float(count)
        metrics["emu_pinned_nodes"] = float(len(emulation.pinned))
        if widened is not None and widened.changed:
            metrics["emu_widened_tensors"] = float(widened.tensors)
            metrics["emu_widened_roundings"] = float(widened.roundings)
        metrics.update(realised_metrics)
        if realised_runtime["precision_mismatch"]:
            log.line(f"precision mismatch: {realised_runtime['precision_mismatch']}")
        return Engine(
            path=engine_path, format=EngineFormat.ONNX_EMULATED, flags=flags, builder=self.name,
            builder_version=self.version(), build_seconds=seconds, log_path=log.path,
            runtime=runtime_record, metrics=metrics, artifacts=(log.path, *artifacts),
        )


# What decides an emulated engine's bytes besides the ONNX and the flag set (both in the
# cache key already): this module and the two it rewrites with.
_SOURCES = tuple(Path(__file__).with_name(name) for name in ("emulate.py", "layers.py",
                                                            "widen.py"))


@functools.cache
def source_digest() -> str:
    """The emulator's own code, by content (8 hex digits). The version in the engine
    cache's key carries it: the package version never changes between fixes, so without it
    a fixed emulator was served the engines the old code had built."""
    return keys.code_digest(_SOURCES)


def _load_session(path: Path, runtime: Mapping[str, Any]) -> None:
    """Create the session the server will create: proves ONNX Runtime accepts the graph
    at the planned optimisation level."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, runtime["graph_optimization_level"])
    options.intra_op_num_threads = runtime["intra_op_num_threads"]
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _write_reports(workdir: Path, flags: FlagSet, emulation: EmulationPlan,
                   runtime: Mapping[str, Any]) -> tuple[Path, ...]:
    effective = flags.as_dict()
    if flags.precision_constraints == "prefer":
        effective["precision_constraints"] = "obey"  # the emulator honours every preference
    flags_json = workdir / "flags.json"
    flags_json.write_text(json.dumps({
        "requested": flags.as_dict(),
        "effective": effective,
        "digest": flags.digest,
        "label": flags.label,
        "runtime": dict(runtime),
        "pinned_nodes": {n.name: {"compute": n.compute, "stored": n.store,
                                  "pattern": n.pinned or n.output_pinned}
                         for n in emulation.pinned},
    }, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    layers_json = workdir / "layer_precisions.json"
    layers_json.write_text(json.dumps([n.record() for n in emulation.nodes], indent=1) + "\n",
                           encoding="utf-8")
    return flags_json, layers_json


def _log_summary(log: _BuildLog, emulation: EmulationPlan, stats: RewriteStats,
                 seconds: float) -> None:
    log.line()
    log.line(f"ONNX Runtime: {emulation.graph_optimization_level}")
    log.line("nodes by op type and stored precision (float outputs only):")
    counts = emulation.stored_counts()
    width = max((len(op) for op in counts), default=8)
    for op in sorted(counts):
        cells = "  ".join(f"{p}={counts[op][p]}" for p in _EMULATED if counts[op][p])
        log.line(f"  {op:<{width}}  {cells}")
    shape = sum(n.shape for n in emulation.nodes)
    log.line(f"shape-subgraph nodes left alone: {shape}")
    log.line(f"pinned nodes: {len(emulation.pinned)}")
    for n in emulation.pinned:
        log.line(f"  {n.name} ({n.op_type}): compute {n.compute}, stored {n.store}, "
                 f"by {n.pinned or n.output_pinned!r}")
    log.line("inserted: " + ", ".join(f"{k}={v}" for k, v in stats.as_dict().items()))
    log.line("timings: " + ", ".join(f"{k}={v:.3f}s" for k, v in log.timings.items()))
    log.line(f"total: {seconds:.3f} s")
