"""Which flag sets a TensorRT release can build: the one copy of the per-version rules,
shared by the trtexec and the Python API builders (and the dry run that plans for a GPU
host). Each refusal names the release note or migration guide it comes from."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.engine import TENSORRT_10_IMAGE
from sweep.errors import FlagSetError
from sweep.flags import FlagSet

Version = tuple[int, int, int]

# trtexec options (read off samples/common/sampleOptions.cpp at v10.16, v11.0 and v11.1)
# that ``trt.extra`` could name but one side of the 10 -> 11 boundary lacks; the precision
# options the flag set itself spells are refused by the rules below.
REMOVED_IN_11 = frozenset({"calibProfile", "minShapesCalib", "optShapesCalib",
                           "maxShapesCalib", "weightless", "restricted", "calib"})
ADDED_IN_11_0 = frozenset({"includeDataTransfers", "noSpinWait", "noCudaGraph"})
ADDED_IN_11_1 = frozenset({"saveAllEngines", "setBuildRoute", "refPair", "loadRefOutputs",
                           "accuracyAlgorithm", "atol", "rtol", "accuracyThreshold",
                           "helpBuildRoute", "tuneBuildRoutes", "tuneBuildRouteFile",
                           "tuningSearch", "tuningTimeOut", "tuningCacheFile", "continue",
                           "dryRun", "tuningResultFile"})


@dataclass(frozen=True)
class VersionRule:
    """One thing a TensorRT release range lacks, and where that is written."""

    applies: str  # a short name for tests and messages
    message: str


def _flag_rules(flags: FlagSet, version: Version) -> list[VersionRule]:
    """Refusals for ``flags`` on TensorRT ``version`` (empty: buildable)."""
    v = ".".join(map(str, version))
    out: list[VersionRule] = []
    if version < (8, 6, 0):
        out.append(VersionRule(
            "min-version",
            f"TensorRT {v} is older than 8.6, the first release with builder optimisation "
            "levels (--builderOptimizationLevel, TensorRT 8.6 release notes) that every "
            "flag set sets. Use a tritonserver image of 23.xx or later."))
    if version < (10, 0, 0):
        if flags.strongly_typed:
            out.append(VersionRule(
                "strongly-typed-pre-10",
                f"trt.strongly_typed=true needs TensorRT 10.0 or later (strongly typed "
                f"networks and trtexec --stronglyTyped are not in {v}'s trtexec; they are "
                "generally available since 10.0). Use a newer image or strongly_typed=false."))
        if flags.precision == "bf16" or any(p == "bf16" for _, p in
                                            flags.layer_precisions + flags.layer_output_types):
            out.append(VersionRule(
                "bf16-pre-10",
                f"bf16 needs TensorRT 10.0 or later (--bf16 and the bf16 layer precision "
                f"are not in {v}'s trtexec). Use a newer image or fp16."))
    if version >= (11, 0, 0):
        weak = flags.precision != "fp32" or flags.layer_precisions or \
            flags.layer_output_types or flags.precision_constraints != "none"
        if not flags.strongly_typed and weak:
            out.append(VersionRule(
                "weak-typing-removed",
                f"TensorRT {v} builds strongly typed networks only: the 11.0.0 release notes "
                "say 'Weak typing is no longer supported' (deprecated since 10.12). Set "
                "trt.strongly_typed=true and put the precisions into the ONNX itself "
                "(the sweep realises them there with ModelOpt: "
                f"{flags.typed_equivalent()}), or use a TensorRT 10.x image for weakly "
                f"typed sweeps: builder.image={TENSORRT_10_IMAGE} "
                f"server.image={TENSORRT_10_IMAGE}."))
        if flags.precision != "fp32" and not flags.strongly_typed:
            out.append(VersionRule(
                "precision-flags-removed",
                f"trt.precision={flags.precision}: TensorRT 11 removed trtexec's precision "
                "flags (--fp16, --bf16, --fp8, --int8, --int4, --best; 'Migrating trtexec "
                "Usage from TensorRT 10.x to 11.x'). Reduced precision must come from the "
                "ONNX (AutoCast, Q/DQ nodes)."))
        if not flags.strongly_typed and (flags.layer_precisions or flags.layer_output_types
                                         or flags.precision_constraints != "none"):
            out.append(VersionRule(
                "precision-constraints-removed",
                "trt.layer_precisions/layer_output_types/precision_constraints: TensorRT 11 "
                "removed BuilderFlag::kOBEY_PRECISION_CONSTRAINTS and "
                "kPREFER_PRECISION_CONSTRAINTS ('Strong typing (always enforced)', 10.x to "
                "11.x C++ API migration) and with them trtexec's --precisionConstraints, "
                "--layerPrecisions and --layerOutputTypes. Pin precisions with casts in the "
                "ONNX instead."))
    routes = [name for name, on in (("trt.build_route", bool(flags.build_route)),
                                    ("trt.tune_build_routes", flags.tunes_routes)) if on]
    if routes and version < (11, 1, 0):
        out.append(VersionRule(
            "build-routes-pre-11.1",
            f"{' and '.join(routes)}: build routes (the Global Performance Tuner, trtexec "
            "--setBuildRoute/--tuneBuildRoutes) are new in TensorRT 11.1; trtexec "
            f"{v} has no such options. Use a TensorRT 11.1 or later image, or drop them."))
    if version < (10, 0, 0) and flags.quantised and flags.high_precision_dtype == "bf16":
        out.append(VersionRule(
            "bf16-pre-10", f"trt.high_precision_dtype=bf16 needs TensorRT 10.0 or later "
            f"(no bf16 in {v}). Use fp16 or fp32."))
    for key, _ in flags.extra:
        where = (f"trt.extra.{key}: trtexec {v} has no --{key}")
        if version >= (11, 0, 0) and key in REMOVED_IN_11:
            out.append(VersionRule("extra-removed", f"{where} (removed in 11.0)."))
        elif version < (11, 0, 0) and key in ADDED_IN_11_0 | ADDED_IN_11_1:
            out.append(VersionRule("extra-too-new", f"{where} (new in trtexec 11)."))
        elif version < (11, 1, 0) and key in ADDED_IN_11_1:
            out.append(VersionRule("extra-too-new", f"{where} (new in trtexec 11.1)."))
    return out


def check_flags_for_version(flags: FlagSet, version: Version) -> list[str]:
    """Raise FlagSetError for flags ``version`` no longer (or not yet) has; return notes
    (deprecations that still build) for the log."""
    refusals = _flag_rules(flags, version)
    if refusals:
        raise FlagSetError(" ".join(r.message for r in refusals))
    notes: list[str] = []
    if (10, 12, 0) <= version < (11, 0, 0) and not flags.strongly_typed:
        notes.append(
            "weakly typed build: TensorRT 10.12 deprecated the weak typing APIs (precision "
            "flags, precision constraints); TensorRT 11 removes them.")
    if version >= (11, 0, 0) and not flags.strongly_typed:
        # fp32 without pins asks nothing of weak typing: the same network, typed by its
        # ONNX, which is all TensorRT 11 builds.
        notes.append(f"TensorRT {'.'.join(map(str, version))} builds every network strongly "
                     "typed; this fp32 flag set without pins is the same build as "
                     "trt.strongly_typed=true.")
    if flags.precision == "int8" and not flags.strongly_typed:
        # Strongly typed, int8 is the typed ONNX's calibrated Q/DQ nodes.
        notes.append(
            "int8 without a calibration cache or Q/DQ nodes: trtexec uses placeholder "
            "scales, so the engine's speed is meaningful but its accuracy is not.")
    if version >= (12, 0, 0):
        notes.append(f"TensorRT {'.'.join(map(str, version))} is newer than the release "
                     "notes these rules were written from (11.x); flags not re-checked.")
    return notes
