"""The flag set: one TensorRT build configuration, validated the way TensorRT validates it.

A ``FlagSet`` is the identity of an engine: its ``digest`` (with the ONNX bytes and the
builder) keys the engine cache and tags every MLflow run. Builders turn it into their own
settings (``builder/trtexec.py``: a trtexec argument list; ``builder/emulate.py``: an ONNX
Runtime emulation plan); nothing else interprets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sweep import keys
from sweep.errors import FlagSetError

PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
CALIBRATION_METHODS = ("max", "entropy")
# Fields added with the precision stage: left out of the digest at their defaults, so the
# flag sets (engine cache entries, resumed runs) of earlier sweeps keep their identity.
_GRAPH_DEFAULTS = {"keep_io_types": True, "autocast_data_max": 512.0,
                   "autocast_init_max": 65504.0, "calibration_method": "max",
                   "autocast_max_depth_of_reduction": None, "qdq_placement": "calibrated",
                   "build_route": "", "tune_build_routes": "none", "tuning_expr": "",
                   "tuning_timeout_s": -1, "save_all_engines": False,
                   "tuning_accuracy_algorithm": "cos", "tuning_accuracy_threshold": 0.01}
# The precision of what int8/fp8 quantisation leaves unquantised (ModelOpt's
# ``high_precision_dtype``; its default is fp16). Part of an int8/fp8 flag set's digest
# always: the engine differs with it.
HIGH_PRECISIONS = ("fp32", "fp16", "bf16")
QDQ_PLACEMENTS = ("calibrated", "autotune")
# trtexec 11.1+ (samples/common/sampleOptions.cpp, TuningOptions::parse): --tuningSearch.
TUNING_SEARCHES = ("fast", "full", "mixed")
# trtexec's --accuracyAlgorithm (samples/trtexec/README.md, example 7.5).
ACCURACY_ALGORITHMS = ("l0", "l1", "l2", "lInf", "cos")
# A build route is space-separated ``-knob=value`` tokens; a tuning expression also takes
# ``-knob=[a|b|c]`` (README example 7.2/7.3; knob names come from --helpBuildRoute and
# differ by release, e.g. ``-kgen:tiling``, ``-match_ragged_mha``).
_KNOB = r"-[A-Za-z0-9_][A-Za-z0-9_:.\-]*"
_VALUE = r"[A-Za-z0-9_.:+\-]+"
_ROUTE_TOKEN = re.compile(rf"^{_KNOB}={_VALUE}$")
_EXPR_TOKEN = re.compile(rf"^{_KNOB}=(?:{_VALUE}|\[{_VALUE}(?:\|{_VALUE})*\])$")
LAYER_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
CONSTRAINTS = ("none", "prefer", "obey")

# A layer pattern ends up inside a trtexec argument ("--layerPrecisions=name:fp32,...").
# ',' and ':' are trtexec's separators, and anything shell-like has no business there, so
# patterns are limited to what ONNX exporters put in node names, plus one '*' wildcard
# (trtexec allows at most one per name).
_PATTERN = re.compile(r"^[A-Za-z0-9_./\-\[\]*]+$")


def _check_pattern(pattern: str, where: str) -> None:
    if not _PATTERN.match(pattern) or pattern.count("*") > 1:
        raise FlagSetError(
            f"{where}: layer pattern {pattern!r} is not allowed. Expected an ONNX node name or "
            "op type made of letters, digits and '_ . / - [ ]', with at most one '*' "
            "(e.g. 'LayerNormalization', '/encoder/layers.0/*')."
        )


def _layer_map(value: Mapping[str, str] | Iterable[tuple[str, str]] | None, where: str
               ) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    out: list[tuple[str, str]] = []
    for pattern, precision in items:
        pattern, precision = str(pattern), str(precision).lower()
        _check_pattern(pattern, where)
        if precision not in LAYER_PRECISIONS:
            raise FlagSetError(
                f"{where}: precision {precision!r} for {pattern!r} is unknown; expected one "
                f"of {', '.join(LAYER_PRECISIONS)}."
            )
        out.append((pattern, precision))
    return tuple(out)


@dataclass(frozen=True)
class FlagSet:
    """One TensorRT builder configuration (trtexec's vocabulary, snake_case).

    Defaults are TensorRT's own: weakly typed, FP32, TF32 enabled, optimisation level 3.
    ``layer_precisions``/``layer_output_types`` map a pattern (an ONNX node name or an op
    type such as ``LayerNormalization``, optionally with one ``*``) to a precision; order
    matters as in trtexec (later entries override earlier ones).
    """

    strongly_typed: bool = False
    precision: str = "fp32"
    layer_precisions: tuple[tuple[str, str], ...] = ()
    layer_output_types: tuple[tuple[str, str], ...] = ()
    precision_constraints: str = "none"
    tf32: bool = True
    opt_level: int = 3
    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 16
    timing_cache: bool = True
    extra: tuple[tuple[str, str], ...] = field(default=())
    # Realised in the graph (strongly typed with a reduced precision; sweep/precision/):
    # ModelOpt AutoCast's range limits for fp16/bf16 (a node whose reference outputs exceed
    # data_max, or whose weights exceed init_max, stays fp32), whether the graph's inputs
    # and outputs keep their types, and the calibration method of int8/fp8 quantisation.
    keep_io_types: bool = True
    autocast_data_max: float = 512.0
    autocast_init_max: float = 65504.0
    calibration_method: str = "max"
    # int8/fp8: the precision of the unquantised rest (ModelOpt's high_precision_dtype) and
    # where Q/DQ nodes go: "calibrated" (the sweep's recipe) or "autotune" (ModelOpt
    # Autotune, which places them by TensorRT-measured latency: a GPU host's flag set).
    high_precision_dtype: str = "fp16"
    qdq_placement: str = "calibrated"
    # AutoCast's max_depth_of_reduction: nodes reducing over more elements stay fp32.
    autocast_max_depth_of_reduction: int | None = None
    # TensorRT 11.1+ Global Performance Tuner: one build route (``--setBuildRoute``), or a
    # route search (``--tuneBuildRoutes`` over ``tuning_expr`` with ``--tuningSearch``),
    # filtered by trtexec's accuracy check against the fp32 model's reference outputs.
    build_route: str = ""
    tune_build_routes: str = "none"
    tuning_expr: str = ""
    tuning_timeout_s: int = -1
    save_all_engines: bool = False
    tuning_accuracy_algorithm: str = "cos"
    tuning_accuracy_threshold: float = 0.01

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> FlagSet:
        """Build and validate from a plain mapping (Hydra's ``cfg.trt`` as a dict)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(cfg) - known
        if unknown:
            raise FlagSetError(
                f"trt: unknown flag(s) {sorted(unknown)}; expected some of {sorted(known)}."
            )
        values = dict(cfg)
        values["layer_precisions"] = _layer_map(values.get("layer_precisions"),
                                                "trt.layer_precisions")
        values["layer_output_types"] = _layer_map(values.get("layer_output_types"),
                                                  "trt.layer_output_types")
        extra = values.get("extra") or ()
        values["extra"] = tuple(sorted((str(k), str(v)) for k, v in
                                       (extra.items() if isinstance(extra, Mapping) else extra)))
        try:
            flags = cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
            raise FlagSetError(f"trt: {exc}") from exc
        flags.validate()
        return flags

    def validate(self) -> None:
        """Reject what TensorRT/trtexec would reject, with the rule named."""
        if self.precision not in PRECISIONS:
            raise FlagSetError(
                f"trt.precision={self.precision!r} is unknown; expected one of "
                f"{', '.join(PRECISIONS)}."
            )
        if self.precision_constraints not in CONSTRAINTS:
            raise FlagSetError(
                f"trt.precision_constraints={self.precision_constraints!r} is unknown; "
                f"expected one of {', '.join(CONSTRAINTS)}."
            )
        if not 0 <= int(self.opt_level) <= 5:
            raise FlagSetError(
                f"trt.opt_level={self.opt_level} is out of range; TensorRT's "
                "builderOptimizationLevel takes 0..5."
            )
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise FlagSetError(
                f"trt batch shapes must satisfy 1 <= min_batch <= opt_batch <= max_batch; got "
                f"min={self.min_batch}, opt={self.opt_batch}, max={self.max_batch}."
            )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise FlagSetError(
                f"trt.calibration_method={self.calibration_method!r} is unknown; expected one "
                f"of {', '.join(CALIBRATION_METHODS)}.")
        self._validate_remainder()
        self._validate_routes()
        if self.strongly_typed:
            # Strongly typed, a reduced precision is realised in the graph (sweep/precision/:
            # AutoCast casts, Q/DQ nodes) and TensorRT gets no precision flag; the only
            # per-layer setting left is which nodes stay FP32 (AutoCast's exclusions).
            if self.layer_output_types:
                raise FlagSetError(
                    "trt.strongly_typed=true with layer_output_types: a strongly typed network "
                    "takes its output types from the ONNX. Keep nodes in FP32 with "
                    "trt.layer_precisions={PATTERN: fp32} instead.")
            kept = [p for p, precision in self.layer_precisions if precision != "fp32"]
            if kept:
                raise FlagSetError(
                    f"trt.strongly_typed=true with layer_precisions {kept} not fp32: in the "
                    "graph a pattern can only keep nodes in FP32 (AutoCast's exclusions); the "
                    "reduced precision is trt.precision.")
            if self.layer_precisions and self.precision == "fp32":
                raise FlagSetError(
                    "trt.strongly_typed=true with trt.precision=fp32 and FP32 keeps: nothing is "
                    "reduced, so there is nothing to keep. Set trt.precision=fp16|bf16|int8 or "
                    "drop trt.layer_precisions.")
            if self.precision_constraints != "none":
                raise FlagSetError(
                    "trt.strongly_typed=true with precision_constraints="
                    f"{self.precision_constraints}: precision constraints apply only to weakly "
                    "typed networks (TensorRT 11 removed them). Set "
                    "precision_constraints=none; the FP32 keeps stay in the graph.")
        elif self.precision == "fp8":
            raise FlagSetError(
                "trt.precision=fp8 weakly typed: TensorRT builds no fp8 layer from the flag "
                "alone (kFP8 only enables plugins with fp8 I/O), so the engine would be "
                "fp32/tf32. fp8 needs Q/DQ nodes: trt.strongly_typed=true trt.precision=fp8.")
        if (self.layer_precisions or self.layer_output_types) and \
                self.precision_constraints == "none" and not self.strongly_typed:
            raise FlagSetError(
                "trt.layer_precisions/layer_output_types are set but precision_constraints="
                "none: TensorRT applies them only under --precisionConstraints=prefer or obey. "
                "Set trt.precision_constraints=obey (or prefer)."
            )
        for where, mapping in (("trt.layer_precisions", self.layer_precisions),
                               ("trt.layer_output_types", self.layer_output_types)):
            for pattern, precision in mapping:
                _check_pattern(pattern, where)
                if precision not in LAYER_PRECISIONS:
                    raise FlagSetError(f"{where}: precision {precision!r} is unknown.")

    @property
    def quantised(self) -> bool:
        return self.precision in ("int8", "fp8")

    @property
    def tunes_routes(self) -> bool:
        return self.tune_build_routes != "none"

    def _validate_remainder(self) -> None:
        if self.high_precision_dtype not in HIGH_PRECISIONS:
            raise FlagSetError(
                f"trt.high_precision_dtype={self.high_precision_dtype!r} is unknown; expected "
                f"one of {', '.join(HIGH_PRECISIONS)}.")
        if self.high_precision_dtype != "fp16" and not (self.quantised and
                                                        self.strongly_typed):
            raise FlagSetError(
                f"trt.high_precision_dtype={self.high_precision_dtype} applies to int8/fp8 "
                "realised in the graph only (the precision of what quantisation leaves "
                "unquantised); set trt.strongly_typed=true trt.precision=int8|fp8, or drop it.")
        if self.qdq_placement not in QDQ_PLACEMENTS:
            raise FlagSetError(
                f"trt.qdq_placement={self.qdq_placement!r} is unknown; expected one of "
                f"{', '.join(QDQ_PLACEMENTS)}.")
        if self.qdq_placement == "autotune" and not (self.quantised and self.strongly_typed):
            raise FlagSetError(
                "trt.qdq_placement=autotune places Q/DQ nodes (ModelOpt Autotune): it needs "
                "trt.strongly_typed=true trt.precision=int8|fp8.")
        depth = self.autocast_max_depth_of_reduction
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise FlagSetError(
                f"trt.autocast_max_depth_of_reduction={depth!r}; expected a positive integer "
                "(the largest reduction AutoCast leaves in low precision) or null (no limit).")
        if depth is not None and not self.in_graph:
            raise FlagSetError(
                "trt.autocast_max_depth_of_reduction is an AutoCast knob: it needs a reduced "
                "precision realised in the graph (trt.strongly_typed=true, trt.precision "
                "fp16|bf16, or int8|fp8 with a fp16|bf16 high_precision_dtype).")

    def _validate_routes(self) -> None:
        route = self.build_route.strip()
        if route and any(not _ROUTE_TOKEN.match(t) for t in route.split()):
            raise FlagSetError(
                f"trt.build_route={self.build_route!r}: expected space-separated '-knob=value' "
                "tokens (trtexec --setBuildRoute, e.g. '-match_ragged_mha=on -copy_ppg=off'; "
                "`trtexec --helpBuildRoute` lists the knobs of a release).")
        if self.tune_build_routes not in ("none", *TUNING_SEARCHES):
            raise FlagSetError(
                f"trt.tune_build_routes={self.tune_build_routes!r} is unknown; expected none "
                f"or a trtexec --tuningSearch mode: {', '.join(TUNING_SEARCHES)}.")
        if not self.tunes_routes:
            if self.tuning_expr or self.save_all_engines or self.tuning_timeout_s != -1:
                raise FlagSetError(
                    "trt.tuning_expr/tuning_timeout_s/save_all_engines set without "
                    "trt.tune_build_routes=fast|full|mixed: they only shape a route search.")
            return
        if route:
            raise FlagSetError(
                "trt.build_route and trt.tune_build_routes both set: a route search picks the "
                "route itself. Sweep trt.build_route to compare fixed routes, or search.")
        tokens = self.tuning_expr.split()
        if not tokens or any(not _EXPR_TOKEN.match(t) for t in tokens):
            raise FlagSetError(
                f"trt.tune_build_routes={self.tune_build_routes} needs trt.tuning_expr, the "
                "route expression trtexec --tuneBuildRoutes searches: space-separated "
                "'-knob=[a|b]' (searched) and '-knob=value' (fixed) tokens, knobs as "
                f"`trtexec --helpBuildRoute` lists them; got {self.tuning_expr!r}.")
        if self.tuning_timeout_s != -1 and self.tuning_timeout_s < 1:
            raise FlagSetError(
                f"trt.tuning_timeout_s={self.tuning_timeout_s}; expected seconds >= 1, or -1 "
                "(trtexec's default: no time-out).")
        if self.tuning_accuracy_algorithm not in ACCURACY_ALGORITHMS:
            raise FlagSetError(
                f"trt.tuning_accuracy_algorithm={self.tuning_accuracy_algorithm!r}; expected "
                f"one of {', '.join(ACCURACY_ALGORITHMS)} (trtexec --accuracyAlgorithm).")
        if not self.tuning_accuracy_threshold > 0:
            raise FlagSetError(
                f"trt.tuning_accuracy_threshold={self.tuning_accuracy_threshold}; trtexec "
                "requires a positive --accuracyThreshold with reference outputs.")

    @property
    def in_graph(self) -> bool:
        """The reduced precision lives in the ONNX (a typed model is made before the build)."""
        return self.strongly_typed and self.precision != "fp32"

    def typed_equivalent(self) -> str:
        """The strongly typed flag set that realises this weak one in the graph, as Hydra
        overrides to copy (TensorRT 11 builds nothing else)."""
        keeps = [p for p, precision in self.layer_precisions if precision == "fp32"]
        parts = ["trt.strongly_typed=true", f"trt.precision={self.precision}",
                 "trt.precision_constraints=none"]
        if keeps:
            parts.append("'+trt.layer_precisions={" + ",".join(f"{k}:fp32" for k in keeps)
                         + "}'")
        if self.layer_output_types:
            parts.append("~trt.layer_output_types")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer_precisions"] = dict(self.layer_precisions)
        d["layer_output_types"] = dict(self.layer_output_types)
        d["extra"] = dict(self.extra)
        return d

    @property
    def digest(self) -> str:
        """Stable identity of the flag set (12 hex digits); key order never matters."""
        d = self.as_dict()
        # Override order is meaningful (later wins), so keep lists, not sorted dicts.
        d["layer_precisions"] = [list(p) for p in self.layer_precisions]
        d["layer_output_types"] = [list(p) for p in self.layer_output_types]
        for key, default in _GRAPH_DEFAULTS.items():
            if d[key] == default:
                del d[key]
        if not self.quantised:
            # Only int8/fp8 have a remainder; everyone else keeps the identity it had.
            del d["high_precision_dtype"]
        return keys.flags_digest(d)

    @property
    def label(self) -> str:
        """A short human name for tables and plots, e.g. ``bf16+3pin-o0-notf32``."""
        parts = ["typed" if self.strongly_typed else self.precision]
        if self.in_graph:
            parts[0] = f"typed-{self.precision}"
        if self.in_graph and self.quantised:
            # int8~fp16: int8 with its unquantised rest in fp16
            parts[0] += f"~{self.high_precision_dtype}"
            if self.qdq_placement == "autotune":
                parts[0] += "+autotune"
        if self.layer_precisions or self.layer_output_types:
            kind = "keep" if self.strongly_typed else "pin"
            parts[0] += f"+{len(self.layer_precisions) + len(self.layer_output_types)}{kind}"
        parts.append(f"o{self.opt_level}")
        if not self.tf32:
            parts.append("notf32")
        if self.build_route:
            parts.append("route" + keys.text_digest(self.build_route, 4))
        if self.tunes_routes:
            parts.append(f"tune{self.tune_build_routes}")
        return "-".join(parts)

    def params(self) -> dict[str, str]:
        """Flattened ``trt.*`` parameters for MLflow (values as strings)."""
        out: dict[str, str] = {}
        for key, value in self.as_dict().items():
            if isinstance(value, dict):
                out[f"trt.{key}"] = ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
            else:
                out[f"trt.{key}"] = str(value)
        if not (self.quantised and self.strongly_typed):
            out["trt.high_precision_dtype"] = "-"  # no unquantised rest to speak of
        return out
