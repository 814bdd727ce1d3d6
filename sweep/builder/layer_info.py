"""Realised precision: what each layer of an engine runs in, against what its label and
its typed ONNX asked.

Sources:

* a TensorRT engine: trtexec's ``--exportLayerInfo`` JSON (the engine inspector's
  ``getEngineInformation``, ``--profilingVerbosity=detailed``) and, where the timing pass
  ran, ``--exportProfile`` (a ``{"count": N}`` record, then per layer ``name``, ``timeMs``,
  ``averageMs``, ``medianMs``, ``percentage``). Layouts: TensorRT 10 has ``"Bindings"`` (I/O
  tensor names) and per tensor ``"Format/Datatype"`` (e.g. ``"Row major linear FP32"``,
  ``"Float"``); TensorRT 11 replaced ``"Bindings"`` with ``"I/O Tensors"`` (objects with
  ``"DataType"``, ``"Format"``, ...) and split ``Format/Datatype`` into ``Format`` and
  ``DataType`` ("Migrating IEngineInspector Usage from TensorRT 10.x to 11.x"). Both are
  read; a layer-names-only export (strings, no tensors) cannot be checked and says so.
* the emulator: the graph it executes, before widening (the typed ONNX's own types; a
  compute node fed by a DequantizeLinear runs quantised, as TensorRT fuses Q/DQ into it).

A layer's precision: int8/fp8 if any of its tensors is, else the type of its first float
output, else its first float input; layers with only integer/bool tensors (shapes, indices)
have none and are left out of the shares.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from sweep.errors import BuildError
from sweep.flags import FlagSet

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
_QUANTISED = ("int8", "fp8")
_ONNX: dict[int, str] = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16",
         onnx.TensorProto.BFLOAT16: "bf16", onnx.TensorProto.INT8: "int8",
         onnx.TensorProto.UINT8: "int8", onnx.TensorProto.FLOAT8E4M3FN: "fp8"}
_COMPUTE = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def dtype_of(text: str) -> str | None:
    """A TensorRT data type or format description as one of PRECISIONS ('int' for
    integer/bool tensors, None when it names no type)."""
    t = text.lower().replace(" ", "")
    for needles, name in ((("bf16", "bfloat16"), "bf16"), (("fp8", "e4m3", "float8"), "fp8"),
                          (("uint8", "int32", "int64", "bool", "int4"), "int"),
                          (("int8",), "int8"), (("fp16", "half", "float16"), "fp16"),
                          (("fp32", "float"), "fp32")):
        if any(n in t for n in needles):
            return name
    return None


def _tensor_type(tensor: dict[str, Any]) -> str | None:
    for key in ("DataType", "Datatype", "Format/Datatype", "Format"):
        value = tensor.get(key)
        if isinstance(value, str) and (found := dtype_of(value)) is not None:
            return found
    return None


def layer_precision(inputs: list[str | None], outputs: list[str | None]) -> str | None:
    every = [t for t in inputs + outputs if t]
    for q in _QUANTISED:
        if q in every:
            return q
    for side in (outputs, inputs):
        floats = [t for t in side if t in PRECISIONS]
        if floats:
            return floats[0]
    return None


@dataclass
class Realised:
    """Per layer (name, type, precision or None) and, where profiled, its time in ms."""

    source: str  # "trtexec 10 layout", "trtexec 11 layout", "emulator graph"
    layers: list[tuple[str, str, str | None]]
    times_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def shares(self) -> dict[str, float]:
        counted = [p for _, _, p in self.layers if p in PRECISIONS]
        counts = Counter(counted)
        return {p: counts[p] / len(counted) if counted else 0.0 for p in PRECISIONS}

    def time_shares(self) -> dict[str, float]:
        spent: dict[str, float] = dict.fromkeys(PRECISIONS, 0.0)
        for name, _, p in self.layers:
            if p is not None and p in spent and name in self.times_ms:
                spent[p] += self.times_ms[name]
        total = sum(spent.values())
        return {p: spent[p] / total for p in PRECISIONS} if total > 0 else {}

    @property
    def checked(self) -> int:
        return sum(p in PRECISIONS for _, _, p in self.layers)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"realised_layers": float(self.checked)}
        if self.checked:
            out.update({f"realised_share_{p}": v for p, v in self.shares().items()})
        out.update({f"realised_time_share_{p}": v for p, v in self.time_shares().items()})
        return out

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "note": self.note, "shares": self.shares(),
                "time_shares": self.time_shares(),
                "layers": [{"name": n, "type": t, "precision": p,
                            **({"time_ms": self.times_ms[n]} if n in self.times_ms else {})}
                           for n, t, p in self.layers]}


def parse_layer_info(doc: Any, profile: Any = None) -> Realised:
    """trtexec's --exportLayerInfo JSON (10 or 11 layout) and optional --exportProfile."""
    if isinstance(doc, dict):
        layout = "11" if "I/O Tensors" in doc else "10" if "Bindings" in doc else "?"
        layers = doc.get("Layers")
    else:
        layout, layers = "?", doc
    if not isinstance(layers, list):
        raise BuildError("layer information has no 'Layers' list (expected trtexec "
                         "--exportLayerInfo output)")
    out: list[tuple[str, str, str | None]] = []
    names_only = False
    for i, layer in enumerate(layers):
        if isinstance(layer, str):  # --profilingVerbosity=layer_names_only
            names_only = True
            out.append((layer, "", None))
            continue
        if not isinstance(layer, dict):
            raise BuildError(f"layer information: entry {i} is neither a name nor an object")
        if layout == "?":
            tensors = [*layer.get("Inputs", []), *layer.get("Outputs", [])]
            if any("Format/Datatype" in t for t in tensors if isinstance(t, dict)):
                layout = "10"
            elif any("DataType" in t for t in tensors if isinstance(t, dict)):
                layout = "11"
        ins = [_tensor_type(t) for t in layer.get("Inputs", []) if isinstance(t, dict)]
        outs = [_tensor_type(t) for t in layer.get("Outputs", []) if isinstance(t, dict)]
        out.append((str(layer.get("Name", f"layer{i}")), str(layer.get("LayerType", "")),
                    layer_precision(ins, outs)))
    times: dict[str, float] = {}
    if isinstance(profile, list):
        for entry in profile:
            if isinstance(entry, dict) and "name" in entry and "timeMs" in entry:
                times[str(entry["name"])] = float(entry["timeMs"])
    note = ""
    if names_only:
        note = ("the engine was built with layer names only (no --profilingVerbosity="
                "detailed): precisions cannot be read")
    elif not out:
        note = "the layer information lists no layers: realised precision not verified"
    source = {"10": "trtexec 10 layout", "11": "trtexec 11 layout"}.get(layout, "trtexec")
    return Realised(source, out, times, note)


def read_engine_layers(layer_json: Path, profile_json: Path | None = None) -> Realised:
    try:
        doc = json.loads(layer_json.read_text())
        profile = json.loads(profile_json.read_text()) if profile_json and \
            profile_json.is_file() else None
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildError(f"cannot read the engine's layer information {layer_json}: {exc}"
                         ) from exc
    return parse_layer_info(doc, profile)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        g = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # custom ops: the declared types only
        g = model.graph
    out = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)
           if v.type.HasField("tensor_type")}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def graph_layers(model: onnx.ModelProto) -> Realised:
    """The emulator's record: per node of the (typed) graph it executes, its precision.
    Q/DQ nodes are not layers (TensorRT fuses them); a compute node reading a dequantised
    tensor runs int8/fp8; weights and constants are not layers either."""
    types = _types(model)
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    weights |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    quantised: dict[str, str] = {}  # DQ output -> int8/fp8
    producer_q: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            kind = "int8"
            if len(node.input) > 2 and types.get(node.input[2]) == onnx.TensorProto.FLOAT8E4M3FN:
                kind = "fp8"
            for attr in node.attribute:
                if attr.name == "output_dtype" and attr.i == onnx.TensorProto.FLOAT8E4M3FN:
                    kind = "fp8"
            producer_q.update({o: kind for o in node.output})
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            kind = producer_q.get(node.input[0]) or _ONNX.get(types.get(node.input[0], 0)) \
                or "int8"
            quantised.update({o: kind for o in node.output})
    out: list[tuple[str, str, str | None]] = []
    for i, node in enumerate(graph.node):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        if node.input and all(t in weights or not t for t in node.input):
            continue  # folded at build time
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in _COMPUTE and any(quantised.get(t) for t in node.input):
            kinds = [quantised[t] for t in node.input if t in quantised]
            out.append((name, node.op_type, "fp8" if "fp8" in kinds else "int8"))
            continue
        outs = [_ONNX.get(types.get(t, 0)) for t in node.output]
        ins = [_ONNX.get(types.get(t, 0)) for t in node.input if t not in weights]
        # int8 tensors outside Q/DQ pairs do not occur in the typed graphs the sweep makes.
        out.append((name, node.op_type, layer_precision(
            [t for t in ins if t not in _QUANTISED], [t for t in outs if t not in _QUANTISED])))
    return Realised("emulator graph", out)


def asked(typed_onnx: Path) -> dict[str, float]:
    """The shares the typed ONNX itself asks for (the same rule, read off the graph)."""
    return graph_layers(onnx.load(str(typed_onnx), load_external_data=False)).shares()


def mismatch(label_precision: str, realised: Realised, wanted: dict[str, float]
             ) -> str | None:
    """Why an engine does not run what its label says, or None (also when nothing could be
    read: an unverified engine is reported by its note, not as a mismatch)."""
    if not realised.checked:
        return None
    shares = realised.shares()
    if label_precision != "fp32":
        if shares[label_precision] == 0.0 and wanted.get(label_precision, 0.0) > 0.0:
            top = ", ".join(f"{p} {v:.0%}" for p, v in shares.items() if v)
            return (f"labelled {label_precision}, the engine runs 0 of its {realised.checked} "
                    f"layers in {label_precision} ({top}); the typed ONNX asked for "
                    f"{wanted[label_precision]:.0%} of its layers in {label_precision}")
        return None
    low = sum(v for p, v in shares.items() if p != "fp32")
    if low > 0.0:
        return (f"labelled fp32, the engine runs {low:.0%} of its {realised.checked} layers "
                "in reduced precision")
    return None


def plot(realised: Realised, wanted: dict[str, float], path: Path, title: str) -> Path:
    """Bars per precision: the typed ONNX's asked share, the engine's layer share and,
    where profiled, its time share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("asked (typed ONNX)", wanted), ("realised: layers", realised.shares())]
    if realised.time_shares():
        series.append(("realised: time", realised.time_shares()))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        ax.bar([i + k * width for i in range(len(PRECISIONS))],
               [100 * values.get(p, 0.0) for p in PRECISIONS], width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(PRECISIONS))],
                  PRECISIONS)
    ax.set_ylabel("% of layers / time")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(flags: FlagSet, realised: Realised, typed_onnx: Path, workdir: Path
           ) -> tuple[dict[str, float], dict[str, Any], tuple[Path, ...]]:
    """Metrics, the runtime entry (mismatch reason, note) and the files to log. Strongly
    typed, the typed ONNX says what was asked; weakly typed, the flag asks it of every
    layer TensorRT may run in it."""
    wanted = asked(typed_onnx) if flags.strongly_typed else {flags.precision: 1.0}
    reason = mismatch(flags.precision, realised, wanted)
    title = f"Realised precision: {flags.label} ({realised.source})"
    record = {**realised.record(), "asked": wanted, "mismatch": reason}
    path = workdir / "realised_precision.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    files: tuple[Path, ...] = (path,)
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # a builder image without it (the CPU image): the record only
        pass
    else:
        if realised.checked:
            files += (plot(realised, wanted, workdir / "realised_precision.png", title),)
    runtime = {"precision_mismatch": reason, "realised_note": realised.note,
               "realised_source": realised.source}
    return realised.metrics(), runtime, files
