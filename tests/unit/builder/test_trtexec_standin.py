"""The strict trtexec stand-in (tests/standins/trtexec.py) against the sweep's own command lines.

The stand-in parses argv with trtexec's option tables for 10.16, 11.0 and 11.1
(tests/standins/trtexec_options.json). Every command line the trtexec builder produces must
get through the parser of the release it is meant for; where the sweep's argv disagrees with
the real tables the test is an expected failure that names the option.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sweep.builder.trtexec import InferenceOptions, TrtexecBuilder, trtexec_args
from sweep.builder.trtexec_log import parse_trtexec_log
from sweep.flags import FlagSet
from tests.support.models import tiny_monolithic_onnx

# tests/standins, wherever below tests/ this file lives.
STANDINS = next(p for p in Path(__file__).resolve().parents if p.name == "tests") / "standins"
STANDIN = STANDINS / "trtexec.py"
TABLES: dict[str, Any] = json.loads((STANDINS / "trtexec_options.json").read_text())
V10, V11_0, V11 = "101600", "110000", "110400"
STAMP = r"\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]"
# trtexec 11 no longer parses these (TensorRT 11 release notes; sampleOptions.cpp v11.0/v11.1).
REMOVED_IN_11 = ("--fp16", "--bf16", "--int8", "--fp8", "--int4", "--best",
                 "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes", "--calib")
# A value each removed option takes in 10.16 (flags take none).
REMOVED_VALUES = {"--precisionConstraints": "obey", "--layerPrecisions": "matmul:fp32",
                  "--layerOutputTypes": "matmul:fp32", "--calib": "/work/calib.cache"}


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def errors(self) -> list[str]:
        return re.findall(rf"^{STAMP} \[E\] (.*)$", self.err, re.M)

    def warnings(self) -> list[str]:
        return re.findall(rf"^{STAMP} \[W\] (.*)$", self.err, re.M)

    def infos(self) -> list[str]:
        return re.findall(rf"^{STAMP} \[I\] (.*)$", self.out, re.M)

    def result_lines(self) -> list[str]:
        return re.findall(r"^&&&& (\w+) TensorRT\.trtexec ", self.out, re.M)


def table(version: str) -> dict[str, Any]:
    for t in TABLES["tables"].values():
        if t["version_range"][0] <= int(version) <= t["version_range"][1]:
            return t
    raise AssertionError(version)


def option_names(version: str) -> set[str]:
    return {o["name"] for o in table(version)["options"]}


def trtexec(tmp_path: Path, version: str, *argv: str) -> Result:
    env = {**os.environ, "FAKE_TRT_VERSION": version,
           "FAKE_TRT_ARGV_FILE": str(tmp_path / "argv.json")}
    env.pop("FAKE_TRT_SM", None)
    proc = subprocess.run([sys.executable, str(STANDIN), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def local(argv: list[str], tmp_path: Path) -> list[str]:
    """The builder's container paths (/onnx, /work, /cache) moved under tmp_path."""
    for folder in ("onnx", "work", "cache"):
        (tmp_path / folder).mkdir(exist_ok=True)
    out = []
    for arg in argv:
        for folder in ("onnx", "work", "cache"):
            arg = arg.replace(f"=/{folder}/", f"={tmp_path}/{folder}/")
        out.append(arg)
    return out


def sweep_argv(tmp_path: Path, flags: dict[str, object], version: tuple[int, int, int],
               inference: InferenceOptions | None = None) -> list[str]:
    (tmp_path / "onnx").mkdir(exist_ok=True)
    onnx_path = tiny_monolithic_onnx(tmp_path / "onnx" / "tiny.onnx")
    builder = TrtexecBuilder(image="unused", inference=inference)
    command = builder.command(onnx_path, FlagSet.from_mapping(flags), version)
    return local(command[1:], tmp_path)


PINS = {"LogSoftmax": "fp32", "MatMul": "fp32"}
WEAK_MATRIX: dict[str, dict[str, object]] = {
    "fp32-weak": {},
    "fp32-strong": {"strongly_typed": True},
    "fp16": {"precision": "fp16"},
    "bf16-pins-obey": {"precision": "bf16", "precision_constraints": "obey", "tf32": False,
                       "opt_level": 0, "layer_precisions": PINS, "layer_output_types": PINS},
    "fp16-pins-prefer": {"precision": "fp16", "precision_constraints": "prefer",
                         "layer_precisions": {"LogSoftmax": "fp32"}},
    "int8": {"precision": "int8"},
    # Weak fp8 is refused by the flag set (TensorRT builds no fp8 layer from the flag);
    # fp8 is Q/DQ in a typed ONNX, built strongly typed.
    "fp8": {"strongly_typed": True, "precision": "fp8"},
    "opt0": {"opt_level": 0},
    "opt5-strong": {"strongly_typed": True, "opt_level": 5, "min_batch": 1, "opt_batch": 64,
                    "max_batch": 64},
    "no-tf32": {"tf32": False},
    "no-timing-cache": {"timing_cache": False},
    "extra": {"extra": {"memPoolSize": "workspace:4096", "sparsity": "disable",
                        "versionCompatible": "true"}},
}
STRONG_MATRIX: dict[str, dict[str, object]] = {
    "fp32-strong": {"strongly_typed": True},
    "opt0-strong": {"strongly_typed": True, "opt_level": 0},
    "opt5-strong": {"strongly_typed": True, "opt_level": 5, "min_batch": 1, "opt_batch": 64,
                    "max_batch": 64},
    "no-tf32-strong": {"strongly_typed": True, "tf32": False},
    "no-timing-cache-strong": {"strongly_typed": True, "timing_cache": False},
}
INFERENCE: dict[str, InferenceOptions | None] = {
    "default": None,
    "skip": InferenceOptions(skip=True),
    "tuned": InferenceOptions(duration_s=1, warmup_ms=0, spin_wait=False, data_transfers=False,
                              cuda_graph=True, batch=1),
}


# -- (a) the sweep's argv gets through the real parsers ---------------------------------
@pytest.mark.parametrize("inference", INFERENCE, ids=str)
@pytest.mark.parametrize("name", WEAK_MATRIX, ids=str)
def test_sweep_argv_accepted_by_10_16(tmp_path: Path, name: str, inference: str) -> None:
    argv = sweep_argv(tmp_path, WEAK_MATRIX[name], (10, 16, 0), INFERENCE[inference])
    result = trtexec(tmp_path, V10, *argv)
    assert result.rc == 0, result.text
    assert not result.errors(), result.text
    assert result.result_lines() == ["RUNNING", "PASSED"]
    assert json.loads((tmp_path / "argv.json").read_text()) == argv
    report = parse_trtexec_log(result.text)
    assert report.tensorrt_version == (10, 16, 0) and report.passed
    assert (tmp_path / "work" / "model.plan").is_file()
    assert (tmp_path / "work" / "layers.json").is_file()
    if WEAK_MATRIX[name].get("timing_cache", True):
        assert (tmp_path / "cache" / "timing.cache").is_file()
    if inference != "skip":
        assert report.throughput_qps == 130.298


@pytest.mark.parametrize("version", [V11_0, V11, "120000"], ids=str)
@pytest.mark.parametrize("inference", INFERENCE, ids=str)
@pytest.mark.parametrize("name", STRONG_MATRIX, ids=str)
def test_sweep_argv_strongly_typed_accepted_by_11(tmp_path: Path, name: str, inference: str,
                                                  version: str) -> None:
    major, minor = int(version) // 10000, int(version) // 100 % 100
    argv = sweep_argv(tmp_path, STRONG_MATRIX[name], (major, minor, 0), INFERENCE[inference])
    assert "--stronglyTyped" not in argv
    result = trtexec(tmp_path, version, *argv)
    assert result.rc == 0, result.text
    assert not result.errors(), result.text
    assert parse_trtexec_log(result.text).passed


def test_weak_bf16_build_warns_as_10_16_does(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10,
                     *sweep_argv(tmp_path, WEAK_MATRIX["bf16-pins-obey"], (10, 16, 0)))
    assert result.rc == 0
    assert result.warnings() == [
        "Weakly-typed networks have been deprecated in TensorRT. You can use the AutoCast tool "
        "(https://nvidia.github.io/TensorRT-Model-Optimizer/guides/8_autocast.html) to convert "
        "the network to be strongly typed.",
        "the ONNX folder is writable"]


def test_fp32_weak_build_gets_the_tf32_notice(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10, *sweep_argv(tmp_path, {}, (10, 16, 0)))
    assert ("TF32 is enabled by default. Add --noTF32 flag to further improve accuracy with "
            "some performance cost.") in result.infos()


# -- what the sweep emits for 11.x that the 11.x tables disagree with --------------------
def test_sweep_argv_for_11_prints_no_deprecation_warning(tmp_path: Path) -> None:
    argv = sweep_argv(tmp_path, {"strongly_typed": True}, (11, 4, 0))
    result = trtexec(tmp_path, V11, *argv)
    assert result.rc == 0
    assert not [w for w in result.warnings() if "deprecated" in w], result.warnings()


@pytest.mark.parametrize(("setting", "needed"), [
    ({"data_transfers": True}, "--includeDataTransfers"),
    ({"spin_wait": False}, "--noSpinWait"),
    ({"cuda_graph": False}, "--noCudaGraph"),
], ids=["data_transfers", "spin_wait", "cuda_graph"])
def test_sweep_argv_for_11_keeps_the_timing_settings(tmp_path: Path, setting: dict[str, bool],
                                                     needed: str) -> None:
    assert needed in option_names(V11) and needed not in option_names(V10)
    inference = InferenceOptions(**setting)
    argv = trtexec_args(FlagSet(strongly_typed=True), "m.onnx", "e.plan", {"x": (4,)},
                        inference=inference, version=(11, 4, 0))
    assert needed in argv


@pytest.mark.parametrize(("version", "key"), [(V10, "noSpinWait"), (V11, "weightless")],
                         ids=["10.16-noSpinWait", "11.x-weightless"])
def test_extra_option_missing_from_the_version_is_refused(tmp_path: Path, version: str,
                                                          key: str) -> None:
    from sweep.errors import FlagSetError

    assert f"--{key}" not in option_names(version)
    major, minor = int(version) // 10000, int(version) // 100 % 100
    flags = {"strongly_typed": True, "extra": {key: "true"}}
    try:
        argv = sweep_argv(tmp_path, flags, (major, minor, 0))
    except FlagSetError:
        return
    result = trtexec(tmp_path, version, *argv)
    assert result.rc == 0, result.errors()


# -- (b) the options trtexec 11 removed ----------------------------------------------------
@pytest.mark.parametrize("version", [V11_0, V11], ids=["11.0", "11.x"])
@pytest.mark.parametrize("option", REMOVED_IN_11)
def test_removed_option_is_unknown_on_11(tmp_path: Path, option: str, version: str) -> None:
    assert option in option_names(V10) and option not in option_names(version)
    value = REMOVED_VALUES.get(option)
    spelled = f"{option}={value}" if value else option
    result = trtexec(tmp_path, version, "--onnx=m.onnx", spelled)
    assert result.rc == 1
    # trtexec prints "Unknown option: <key> <value>": a flag's line ends in a space.
    assert result.errors() == [f"Unknown option: {option} {value or ''}"]
    assert re.search(rf"^{STAMP} \[E\] Unknown option: {re.escape(option)} ", result.err, re.M)
    assert "Usage" in result.out  # the usage comes first, as trtexec prints its --help
    # 11.0's main reports the failure; 11.1's parseArgs returns before the FAILED line.
    assert result.result_lines() == (["RUNNING", "FAILED"] if version == V11_0 else ["RUNNING"])


def test_all_removed_options_are_reported(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V11, "--onnx=m.onnx", "--fp16", "--precisionConstraints=obey",
                     "--layerPrecisions=matmul:fp32")
    assert result.rc == 1
    assert result.errors() == ["Unknown option: --fp16 ",
                               "Unknown option: --precisionConstraints obey",
                               "Unknown option: --layerPrecisions matmul:fp32"]


def test_strongly_typed_is_a_silent_no_op_on_11(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, V11, "--onnx=m.onnx", "--stronglyTyped", "--skipInference")
    assert result.rc == 0 and result.warnings() == ["the ONNX folder is writable"]
    assert {o["name"]: o for o in table(V11)["options"]}["--stronglyTyped"].get("noop")


def test_11_only_options_are_unknown_on_10(tmp_path: Path) -> None:
    for option in ("--includeDataTransfers", "--noSpinWait", "--noCudaGraph"):
        result = trtexec(tmp_path, V10, "--onnx=m.onnx", option)
        assert result.rc == 1 and result.errors() == [f"Unknown option: {option} "]
        assert result.result_lines() == ["RUNNING", "FAILED"]


# -- (c) deprecation warnings ------------------------------------------------------------
@pytest.mark.parametrize(("version", "argv", "warning"), [
    (V10, ["--directIO"], "--directIO flag has been deprecated"),
    (V10, ["--plugins=libfoo.so"],
     "--plugins flag has been deprecated, use --staticPlugins flag instead."),
    (V10, ["--streams=2"], "--streams flag has been deprecated, use --infStreams flag instead."),
    (V10, ["--profilingVerbosity=verbose"],
     "--profilingVerbosity=verbose has been deprecated by --profilingVerbosity=detailed."),
    (V10, ["--preview=+profileSharing0806"],
     "profileSharing0806 is on by default in TensorRT 10.0. This flag is deprecated and has no "
     "effect."),
    (V10, ["--fp16"],
     "Weakly-typed networks have been deprecated in TensorRT. You can use the AutoCast tool "
     "(https://nvidia.github.io/TensorRT-Model-Optimizer/guides/8_autocast.html) to convert the "
     "network to be strongly typed."),
    (V11, ["--useSpinWait"], "--useSpinWait is deprecated. Spin wait is now enabled by default. "
     "Use --noSpinWait to disable spin wait."),
    (V11, ["--noDataTransfers"], "--noDataTransfers is deprecated. Data transfers are now "
     "disabled by default. Use --includeDataTransfers to re-enable data transfers."),
    (V11, ["--useCudaGraph"], "--useCudaGraph is deprecated. CUDA graph is now enabled by "
     "default. Use --noCudaGraph to disable CUDA graph."),
], ids=lambda v: v if isinstance(v, str) and v.startswith("1") else None)
def test_deprecated_option_warns(tmp_path: Path, version: str, argv: list[str],
                                 warning: str) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, version, "--onnx=m.onnx", "--skipInference", *argv)
    assert result.rc == 0, result.text
    assert warning in result.warnings()
    recorded = json.dumps(table(version))
    assert json.dumps(warning)[1:-1] in recorded, "the warning comes from the table"


def test_plugins_warn_once_per_occurrence(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--skipInference", "--plugins=a.so",
                     "--plugins=b.so")
    assert result.rc == 0
    assert result.warnings().count(
        "--plugins flag has been deprecated, use --staticPlugins flag instead.") == 2


# -- (d) the 10.x precision rules --------------------------------------------------------
def test_best_with_strongly_typed_is_an_error_on_10(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--best", "--stronglyTyped")
    assert result.rc == 1
    assert result.errors() == [
        "--best and --stronglyTyped cannot be both set. --best enables implicit precisions, "
        "while --stronglyTyped enforces explicit precisions."]
    assert result.result_lines() == ["RUNNING", "FAILED"]
    assert "Usage" in result.out


@pytest.mark.parametrize("argv", [["--fp8", "--int8"], ["--best", "--fp8"]], ids=str)
def test_fp8_with_int8_is_an_error_on_10(tmp_path: Path, argv: list[str]) -> None:
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", *argv)
    assert result.rc == 1
    assert result.errors() == [
        "Invalid usage, fp8 and int8 aren't allowed to be enabled together."]


def test_strongly_typed_drops_precision_flags_on_10(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--skipInference", "--stronglyTyped",
                     "--fp16", "--int8")
    assert result.rc == 0
    assert result.warnings()[:2] == [
        "Invalid usage, setting fp16 mode is not allowed if graph is strongly typed. Disabling "
        "BuilderFlag::kFP16.",
        "Invalid usage, setting int8 mode is not allowed if graph is strongly typed. Disabling "
        "BuilderFlag::kINT8."]
    assert not any("Weakly-typed" in w for w in result.warnings()), "the flags were dropped"


def test_layer_pins_without_constraints_warn_on_10(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--skipInference", "--fp16",
                     "--layerPrecisions=matmul:fp32")
    assert result.rc == 0
    assert ('--layerPrecision/--layerOutputTypes flags have no effect when '
            '--precisionConstraints flag is set to "none".') in result.warnings()
    obey = trtexec(tmp_path, V10, "--onnx=m.onnx", "--skipInference", "--fp16",
                   "--precisionConstraints=obey")
    assert any(w.startswith('When --precisionConstraints flag is set to "obey" or "prefer"')
               for w in obey.warnings())


def test_bad_values_fail_with_the_parser_message(tmp_path: Path) -> None:
    for argv, message in (
            (["--precisionConstraints=strict"], "Unknown precision constraints: strict"),
            (["--layerPrecisions=matmul:fp64"], "Invalid DataType fp64"),
            (["--profilingVerbosity=all"], "Unknown profilingVerbosity: all"),
            (["--minShapes=x:1xAx3"], "stoi conversion failure: failed to parse "
             "minShapes/optShapes/maxShapes. Please double check your input string."),
            (["--memPoolSize=scratch:64"], "Unknown memory pool: scratch"),
            (["--loadEngine=a.plan", "--saveEngine=b.plan"],
             "Incompatible load and save engine options selected")):
        result = trtexec(tmp_path, V10, "--onnx=m.onnx", *argv)
        assert (result.rc, result.errors()) == (1, [message]), argv


# -- (e) unknown options, missing values, duplicates --------------------------------------
@pytest.mark.parametrize("version", [V10, V11], ids=["10.16", "11.x"])
def test_unknown_option_fails(tmp_path: Path, version: str) -> None:
    result = trtexec(tmp_path, version, "--onnx=m.onnx", "--fp17", "--workspace=64")
    assert result.rc == 1
    assert result.errors() == ["Unknown option: --fp17 ", "Unknown option: --workspace 64"]
    assert result.result_lines() == (["RUNNING", "FAILED"] if version == V10 else ["RUNNING"])
    assert not (tmp_path / "m.plan").exists()


def test_space_separated_value_is_an_unknown_option(tmp_path: Path) -> None:
    # trtexec splits at '='; "--onnx m.onnx" is an empty --onnx and an option "m.onnx".
    result = trtexec(tmp_path, V10, "--onnx", "m.onnx")
    assert result.rc == 1 and result.errors() == ["Unknown option: m.onnx "]


def test_missing_number_fails_in_the_conversion(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--builderOptimizationLevel")
    assert (result.rc, result.errors()) == (1, ["stoi"])
    huge = trtexec(tmp_path, V10, "--onnx=m.onnx", "--builderOptimizationLevel=99999999999")
    assert (huge.rc, huge.errors()) == (1, ["Uncaught exception detected: stoi"])
    assert "Usage" not in huge.out and huge.result_lines() == ["RUNNING", "FAILED"]


def test_flag_value_is_ignored_as_trtexec_ignores_it(tmp_path: Path) -> None:
    # stringToValue<bool> returns true whatever follows '=': "--noTF32=0" still disables TF32.
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--skipInference", "--noTF32=0")
    assert result.rc == 0 and not result.errors()


def test_duplicate_option_is_left_over(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10, "--onnx=m.onnx", "--noTF32", "--noTF32")
    assert result.rc == 1 and result.errors() == ["Unknown option: --noTF32 "]
    shapes = trtexec(tmp_path, V10, "--onnx=m.onnx", "--minShapes=x:1", "--minShapes=x:2")
    assert shapes.errors() == [
        "Multiple --minShapes/--optShapes/--maxShapes without --profile are not allowed. "]


def test_model_missing(tmp_path: Path) -> None:
    result = trtexec(tmp_path, V10, "--noTF32")
    assert (result.rc, result.errors()) == (1, ["Model missing or format not recognized"])


# -- banner, help, hooks, the plan --------------------------------------------------------
@pytest.mark.parametrize(("version", "build"), [(V10, 72), (V11_0, 114), ("110100", 106)])
def test_help_prints_the_banner_and_usage(tmp_path: Path, version: str, build: int) -> None:
    result = trtexec(tmp_path, version, "--help")
    first = result.out.splitlines()[0]
    assert first == (f"&&&& RUNNING TensorRT.trtexec [TensorRT v{version}] [b{build}] # "
                     f"{STANDIN} --help")
    assert result.rc == 0 and result.result_lines() == ["RUNNING"]
    assert "--onnx=<value>" in result.out and "--failWith" not in result.out
    assert parse_trtexec_log(result.text).tensorrt_version == (
        int(version) // 10000, int(version) // 100 % 100, 0)


def test_no_arguments_prints_usage(tmp_path: Path) -> None:
    assert trtexec(tmp_path, V10).result_lines() == ["RUNNING", "PASSED"]
    assert trtexec(tmp_path, V11).result_lines() == ["RUNNING"]


def test_fail_with_is_a_test_hook_handled_first(tmp_path: Path) -> None:
    for version in (V10, V11):
        result = trtexec(tmp_path, version, "--onnx=m.onnx", "--fp16", "--failWith=3")
        assert result.rc == 3
        assert any("failing on purpose" in e for e in result.errors())
        assert result.result_lines() == ["RUNNING", "FAILED"]
        assert json.loads((tmp_path / "argv.json").read_text())[-1] == "--failWith=3"
    for t in TABLES["tables"].values():
        assert "--failWith" not in {o["name"] for o in t["options"]}


def test_plan_carries_the_onnx(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "tiny.onnx")
    argv = ["--onnx=tiny.onnx", "--saveEngine=model.plan", "--skipInference"]
    result = trtexec(tmp_path, V11, *argv)
    assert result.rc == 0, result.text
    magic, header, body = (tmp_path / "model.plan").read_bytes().split(b"\n", 2)
    assert magic == b"TRT-SWEEP-STANDIN-PLAN"
    assert json.loads(header) == {"version": V11, "argv": argv}
    assert body == onnx_path.read_bytes()


def test_tables_name_their_sources() -> None:
    tags = {name: t["source"]["tag"] for name, t in TABLES["tables"].items()}
    assert tags == {"10.16": "v10.16", "11.0": "v11.0", "11.x": "v11.1"}
    for t in TABLES["tables"].values():
        assert re.fullmatch(r"[0-9a-f]{40}", t["source"]["commit"])
        assert t["source"]["options"] == "samples/common/sampleOptions.cpp"
        names = [o["name"] for o in t["options"]]
        assert len(names) == len(set(names))
        anchors = set(names) | {"(end)"}
        assert all(r["after"] in anchors for r in t["rules"])
    assert set(REMOVED_IN_11) <= set(TABLES["differences"]["only_in_10.16"])
