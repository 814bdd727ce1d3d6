"""A flag set realised in the graph: the typed ONNX a strongly typed build takes.

* fp16 / bf16: ModelOpt AutoCast (the tool TensorRT's migration guide names). The flag
  set's FP32 keeps (``layer_precisions={PATTERN: fp32}``) become its exclusions: a pattern
  that names an op type of the graph excludes that op type, any other pattern the nodes
  whose names it matches ('*' is the only wildcard, as in trtexec). ``autocast_data_max``,
  ``autocast_init_max`` and ``keep_io_types`` are AutoCast's own knobs.
* int8 / fp8: ModelOpt's explicit quantisation, Q/DQ nodes, per-channel weights, calibrated
  on (audio chunk, state) pairs streamed through the fp32 model (``calibration.py``);
  ``calibration_method`` is its method. FP32 keeps exclude nodes from quantisation.

The result is cached by content (source ONNX, what the flag set asks of the graph,
calibration data, ModelOpt's version): a typed ONNX is made once per sweep, and its digest
is part of the engine cache key (the builder hashes the file it builds from).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from sweep import keys
from sweep.builder import layers
from sweep.errors import BuildError, FlagSetError
from sweep.flags import FlagSet
from sweep.model import read_onnx
from sweep.precision.calibration import CalibrationData

# What int8/fp8 quantises: the compute (ModelOpt's default list also puts Q/DQ on Add, Mul,
# Concat, Slice, Flatten, ...). A streaming model carries its attention and conv caches
# through Concat/Slice into the next chunk: quantised there, the error compounds chunk after
# chunk (the demo: WER 0.94 on demo_tiny with every default op, the state path included).
QUANTIZED_OPS = {"int8": ("Conv", "ConvTranspose", "Gemm", "MatMul"),
                 # ModelOpt's fp8 mode refuses ConvTranspose ("Unsupported op types").
                 "fp8": ("Conv", "Gemm", "MatMul")}
TYPED_NAME = "model.onnx"
TABLE_NAME = "precisions.json"
# ONNX element types as the per-node table names them.
_NAMES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16",
          onnx.TensorProto.BFLOAT16: "bf16", onnx.TensorProto.INT8: "int8",
          onnx.TensorProto.UINT8: "int8", onnx.TensorProto.FLOAT8E4M3FN: "fp8"}


@dataclass(frozen=True)
class TypedModel:
    """The ONNX a build takes: the model's own (nothing to realise) or a typed one."""

    path: Path
    digest: str
    realised: bool
    tool: str = ""
    seconds: float = 0.0
    table_path: Path | None = None
    cached: bool = False


def _modelopt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return "missing"


def _require_modelopt(what: str) -> None:
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError as exc:
        raise BuildError(
            f"{what} needs NVIDIA ModelOpt's ONNX tools, which are not importable here "
            f"({exc}). Install them with `bash scripts/setup.sh --precision` (ModelOpt "
            "without its [onnx] extra, which pins onnxruntime-gpu, plus the modules it "
            "imports and the CPU build of torch it needs to import).") from exc


def exclusions(graph: onnx.GraphProto, flags: FlagSet) -> tuple[list[str], list[str]]:
    """(op types, node-name regexes) kept in FP32; a pattern that matches nothing is an
    error, as it would be a silent no-op in AutoCast."""
    keeps = [p for p, precision in flags.layer_precisions if precision == "fp32"]
    missing = layers.unmatched(graph, [(p, "fp32") for p in keeps])
    if missing:
        raise FlagSetError(
            f"trt.layer_precisions: the FP32 keeps {missing} match no op type or node name "
            "of the ONNX, so they would keep nothing in FP32. Fix the pattern (op types such "
            "as LayerNormalization, or node names with at most one '*').")
    op_types = {n.op_type for n in graph.node}
    types = [p for p in keeps if p in op_types]
    names = ["^" + ".*".join(re.escape(part) for part in p.split("*")) + "$"
             for p in keeps if p not in op_types]
    return types, names


def _key(source_digest: str, flags: FlagSet, calibration: CalibrationData | None) -> str:
    """The typed ONNX's cache entry (``keys.typed_key``): what the flag set asks of the
    graph, this recipe, ModelOpt's version, the calibration data, the source's bytes."""
    ask = {"precision": flags.precision, "keeps": list(flags.layer_precisions),
           "keep_io_types": flags.keep_io_types, "data_max": flags.autocast_data_max,
           "init_max": flags.autocast_init_max,
           "calibration_method": flags.calibration_method if flags.precision in (
               "int8", "fp8") else None,
           "calibration": calibration.digest if calibration is not None else None,
           # The recipe is part of the identity: what is quantised changes the graph.
           "quantized_ops": list(QUANTIZED_OPS.get(flags.precision, ())),
           # 3: activation-activation MatMuls and the feature front end stay high precision
           # 4: the unquantised rest in high_precision_dtype (AutoCast after quantisation)
           "recipe": 4,
           "high_precision_dtype": flags.high_precision_dtype if flags.quantised else None,
           "max_depth_of_reduction": flags.autocast_max_depth_of_reduction,
           "modelopt": _modelopt_version()}
    return keys.typed_key(ask, source_digest)


def precision_table(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """Per node: op type and the precision of its float outputs (``q`` for a Q/DQ node's
    quantised side), the table and plot a user reads to see what computes in what."""
    types = {v.name: v.type.tensor_type.elem_type for v in (
        *model.graph.value_info, *model.graph.input, *model.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    rows = []
    for node in model.graph.node:
        stored: str | None
        if node.op_type == "QuantizeLinear":
            stored = "int8"
            for attr in node.attribute:
                if attr.name == "output_dtype" and attr.i == onnx.TensorProto.FLOAT8E4M3FN:
                    stored = "fp8"
            if len(node.input) > 2 and types.get(node.input[2]) == \
                    onnx.TensorProto.FLOAT8E4M3FN:
                stored = "fp8"
        else:
            found = [_NAMES.get(types.get(o, 0)) for o in node.output]
            stored = next((f for f in found if f), None)  # None: no float output
        rows.append({"name": node.name, "op_type": node.op_type, "stored": stored})
    return rows


AUTOTUNE_TOOL = "modelopt.onnx.quantization.autotune"


def autotune_command(onnx_path: Path, flags: FlagSet) -> list[str]:
    """ModelOpt Autotune's command line for a GPU host (it times placements with
    TensorRT): what the dry run plans for ``trt.qdq_placement=autotune``."""
    dq = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[flags.high_precision_dtype]
    return ["python", "-m", AUTOTUNE_TOOL, "--onnx_path", str(onnx_path), "--output_dir",
            "autotune", "--quant_type", flags.precision, "--default_dq_dtype", dq,
            "--use_trtexec"]


def realise(onnx_path: Path, flags: FlagSet, cache_dir: Path,
            calibration: CalibrationData | None = None, plan_only: bool = False,
            source_digest: str | None = None) -> TypedModel:
    """The typed ONNX for ``flags`` (the source itself when nothing is realised).

    ``plan_only`` (a dry run): a placement only a GPU can make (Autotune) is planned, not
    made: the source comes back, marked unrealised, with the tool that will make it.
    ``source_digest``: the source ONNX's sha256, when the caller has it (a job resolved it
    once); else the file is hashed here."""
    source_digest = source_digest or keys.file_digest(onnx_path)
    if not flags.in_graph:
        return TypedModel(onnx_path, source_digest, realised=False)
    if flags.qdq_placement == "autotune":
        if plan_only:
            return TypedModel(onnx_path, source_digest, realised=False,
                              tool=f"{AUTOTUNE_TOOL} (on the GPU host)")
        raise FlagSetError(
            "trt.qdq_placement=autotune: ModelOpt Autotune places Q/DQ nodes by the latency "
            "TensorRT measures on the GPU, so it cannot run on this machine. Plan it with "
            "builder=trtexec builder.dry_run=true builder.tensorrt_version=11.4, and run on "
            "the GPU host: " + " ".join(autotune_command(onnx_path, flags)))
    quantised = flags.precision in ("int8", "fp8")
    if quantised and calibration is None:
        raise FlagSetError(f"trt.precision={flags.precision} in the graph needs calibration "
                           "data (dataset.calibration).")
    entry = cache_dir / "typed" / _key(source_digest, flags, calibration)
    typed = entry / TYPED_NAME
    if typed.is_file():
        os.utime(entry)
        return TypedModel(typed, keys.file_digest(typed), True, tool=_tool(flags),
                          table_path=entry / TABLE_NAME, cached=True)
    graph = read_onnx(onnx_path, load_weights=False).graph
    op_types, names = exclusions(graph, flags)
    _require_modelopt(f"trt.precision={flags.precision} realised in the graph")
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".typed-", dir=entry.parent))
    start = time.perf_counter()
    try:
        out = tmp / TYPED_NAME
        source = _stage(onnx_path, graph, tmp)
        if quantised:
            assert calibration is not None
            _quantize(source, out, flags, calibration, op_types, names, tmp)
        else:
            _autocast(source, out, flags, op_types, names, calibration, tmp)
        model = onnx.load(str(out), load_external_data=False)
        table = precision_table(model)
        (tmp / TABLE_NAME).write_text(json.dumps(table, indent=1) + "\n")
        (tmp / "realised.json").write_text(json.dumps({
            "tool": _tool(flags), "flags": flags.as_dict(), "op_types_kept": op_types,
            "nodes_kept": names, "calibration": calibration.digest if calibration else None,
            "calibration_samples": calibration.samples if calibration else 0,
            "seconds": time.perf_counter() - start,
            "stored": dict(Counter(str(r["stored"]) for r in table))}, indent=2) + "\n")
        try:
            tmp.rename(entry)
        except OSError:  # a concurrent job made the same entry: it is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except FlagSetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"realising {flags.label} in the graph with {_tool(flags)} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return TypedModel(typed, keys.file_digest(typed), True, tool=_tool(flags),
                      seconds=time.perf_counter() - start, table_path=entry / TABLE_NAME)


def _tool(flags: FlagSet) -> str:
    kind = "quantization" if flags.precision in ("int8", "fp8") else "autocast"
    return f"modelopt.onnx.{kind} {_modelopt_version()}"


@contextlib.contextmanager
def _quiet() -> Any:
    # ModelOpt logs every pass at INFO through the root logger; the build log keeps ours.
    import logging

    level = logging.root.level
    logging.root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logging.root.setLevel(level)


def _autocast(source: Path, out: Path, flags: FlagSet, op_types: list[str],
              names: list[str], calibration: CalibrationData | None, tmp: Path) -> None:
    from modelopt.onnx.autocast import convert_to_mixed_precision

    data = str(calibration.save(tmp / "calibration.npz")) if calibration is not None else None
    with _quiet():
        model = convert_to_mixed_precision(
            onnx_path=str(source), low_precision_type=flags.precision,
            nodes_to_exclude=names or None, op_types_to_exclude=op_types or None,
            data_max=flags.autocast_data_max, init_max=flags.autocast_init_max,
            keep_io_types=flags.keep_io_types, calibration_data=data, providers=["cpu"],
            max_depth_of_reduction=flags.autocast_max_depth_of_reduction)
    onnx.save(model, str(out))


def activation_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMul nodes with no weight operand (attention's Q.K^T and scores.V): their inputs
    carry the attention masks (-1e4) beside ordinary values, so one int8 scale for the
    tensor rounds every ordinary value to zero. Left in high precision, as TensorRT's own
    explicit-quantisation recipes leave attention's batched matmuls."""
    weights = {i.name for i in graph.initializer}
    weights |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.name
            and not any(i in weights for i in n.input)]


def front_end(graph: onnx.GraphProto) -> list[str]:
    """The nodes of an in-graph feature front end: the first Log (of the mel energies) and
    everything it is computed from. Power spectra span some 17 orders of magnitude (the
    demo: 1e-8 to 1e9), which no int8 scale holds: quantised, the demo's WER went from 0 to
    0.95 on 24 test utterances; with the front end in fp32, 0.012. A model without a Log
    (features computed outside, the skip_preprocessor contract) has none."""
    producer = {o: n for n in graph.node for o in n.output}
    first = next((n for n in graph.node if n.op_type == "Log"), None)
    if first is None:
        return []
    seen: dict[str, onnx.NodeProto] = {}
    stack = [first]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen[node.name] = node
        stack += [producer[i] for i in node.input if i in producer]
    return [name for name in seen if name]


def _stage(source: Path, graph: onnx.GraphProto, tmp: Path) -> Path:
    """A private copy of ``source`` and its external data files for ModelOpt to read.

    ModelOpt's quantiser runs ONNX shape inference on the path it is given and saves the
    result over it: handed the user's file, an int8 job rewrote the model every other job of
    the sweep was reading, and changed its digest under the engine cache.
    """
    staged = tmp / "source" / source.name
    staged.parent.mkdir()
    shutil.copy2(source, staged)
    for tensor in graph.initializer:
        if onnx.external_data_helper.uses_external_data(tensor):
            location = onnx.external_data_helper.ExternalDataInfo(tensor).location
            target = staged.parent / location
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source.parent / location, target)
    return staged


def _quantize(source: Path, out: Path, flags: FlagSet, calibration: CalibrationData,
              op_types: list[str], names: list[str], tmp: Path) -> None:
    from modelopt.onnx.quantization import quantize

    graph = read_onnx(source, load_weights=False).graph
    kept = [*activation_matmuls(graph), *front_end(graph)]
    names = [*names, *("^" + re.escape(n) + "$" for n in dict.fromkeys(kept))]

    with _quiet():
        quantize(onnx_path=str(source), quantize_mode=flags.precision,
                 op_types_to_quantize=list(QUANTIZED_OPS[flags.precision]),
                 calibration_data=calibration.arrays,
                 calibration_method=flags.calibration_method, calibration_eps=["cpu"],
                 op_types_to_exclude=op_types or None, nodes_to_exclude=names or None,
                 high_precision_dtype="fp32", output_path=str(out), log_level="WARNING")
    if not out.is_file():
        raise BuildError(f"ModelOpt's quantisation wrote no model at {out}")
    if flags.high_precision_dtype == "fp32":
        return
    # The unquantised rest in fp16/bf16. ModelOpt's quantize() would convert it itself, but
    # that conversion takes op types only and checks no ranges: the FP32 keeps by node name
    # and the feature front end (power spectra to 1e9, past fp16's 65504) would be cast
    # too. AutoCast on the quantised graph keeps both, and its range check (data_max on
    # the streamed calibration pairs) keeps any other node whose outputs would overflow.
    from modelopt.onnx.autocast import convert_to_mixed_precision

    data = str(calibration.save(tmp / "calibration.npz"))
    with _quiet():
        model = convert_to_mixed_precision(
            onnx_path=str(out), low_precision_type=flags.high_precision_dtype,
            nodes_to_exclude=names or None, op_types_to_exclude=op_types or None,
            data_max=flags.autocast_data_max, init_max=flags.autocast_init_max,
            keep_io_types=flags.keep_io_types, calibration_data=data, providers=["cpu"],
            max_depth_of_reduction=flags.autocast_max_depth_of_reduction)
    onnx.save(model, str(out))
