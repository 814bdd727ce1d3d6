#!/usr/bin/env python3
"""A strict stand-in for NVIDIA's trtexec, for test images (TensorRT cannot be installed there).

It parses its argv against trtexec's own option tables (``trtexec_options.json`` beside this
file, read off NVIDIA/TensorRT's ``samples/common/sampleOptions.cpp`` for 10.16, 11.0 and
11.1): an option a release does not have, a duplicate, or a value its parser cannot convert
fails the way that release's trtexec fails (the usage, ``[E] Unknown option: <key> <value>``
or the parser's message, exit 1, and the ``&&&& FAILED`` line where that release prints one);
deprecated options print their release's warning, and the 10.x precision rules (``--best``
with ``--stronglyTyped``, ``--fp8`` with ``--int8``, flags dropped under ``--stronglyTyped``,
layer pins without ``--precisionConstraints``) warn or fail as 10.16 does. What the parser
accepts then runs like a successful trtexec build in the real log format.

Python 3 standard library only; it runs as ``/usr/src/tensorrt/bin/trtexec`` inside a
Debian test image (``/opt/venv/bin/python`` or ``python3``).

Environment:
  FAKE_TRT_VERSION   the version it claims, encoded as trtexec's banner does (``101600`` is
                     10.16.0, ``110100`` 11.1.0; default 101600). Any 10.x (and older) uses
                     the 10.16 table, 11.0.x the 11.0 table, 11.1 and later the 11.1 table.
  FAKE_TRT_BUILD     the ``[bNN]`` build number of the banner (default: the table's).
  FAKE_TRT_SM        the GPU's compute capability as major*10+minor (default 90), for the
                     rules that depend on it (``--best``, the TF32 notice).
  FAKE_TRT_OPTIONS   path of the option tables (default: trtexec_options.json beside this
                     file, then beside the path it was invoked as).
  FAKE_TRT_ARGV_FILE where argv is recorded as JSON (default /work/argv.json; '' disables).

Test hooks (not trtexec's; the option tables do not contain them):
  --failWith=N       checked before the strict parse: prints an [E] line and the FAILED line
                     and exits with N, whatever else the command line holds.
  --duration=S       (a real option) sleeps S seconds in the timing pass when S > 5, so a
                     build can be made to run into a timeout.
  argv record        the arguments (without the program) are written to FAKE_TRT_ARGV_FILE.
  read-only check    it tries to write ``written-by-trtexec`` next to the --onnx file and
                     logs whether the ONNX folder was writable.

What it writes:
  --saveEngine       the "plan": the line ``TRT-SWEEP-STANDIN-PLAN``, then one line of JSON
                     ``{"version": "<FAKE_TRT_VERSION>", "argv": [...]}``, then the bytes of
                     the --onnx file unchanged (a stand-in Triton backend loads the ONNX out
                     of it: skip two lines, the rest is the model).
  --exportLayerInfo  ``{"Layers": [], "Bindings": []}`` (10.x) or ``{"Layers": [],
                     "I/O Tensors": []}`` (11.x, which renamed the field): no layers, as the
                     stand-in builds none, so a realised-precision check finds nothing to
                     verify.
  --timingCacheFile  a small placeholder file.
  stdout/stderr      the RUNNING banner, [I]/[V] lines and the result line on stdout, [W]/[E]
                     lines on stderr, each ``[MM/DD/YYYY-HH:MM:SS] [X] text`` as trtexec
                     logs; the timing pass prints the performance summary of NVIDIA/TensorRT
                     issue 4177 (130.298 qps).

The 11.1 build-route tuning loop (samples/trtexec/README.md example 7; trtexec.cpp
runTuningLoop; sampleTuning.h; sampleUtils.cpp writeTuningCache*): ``--helpBuildRoute``
prints a knob database in getAllBuildRoutes()'s layout (``tuner_version``,
``tuner_options`` of ``option``/``allowed_values``/``default_value``/``help``), its knobs
named after NVIDIA's own examples (match_ragged_mha, copy_ppg, conv_use_long_w,
reshape_ppg, transpose_ppg; default "on" each, which the stand-in chose). The
``--tuneBuildRoutes`` expression is checked against it and expanded (full: the Cartesian
product, first knob outermost; fast: the baseline then one knob changed at a time, last
knob first; mixed: fast, then full over the knobs that beat the baseline when more than
one did); ``--dryRun`` lists the routes. Each iteration "builds" (the plan as below), gets a
made-up GPU time from its route's hash (7 to 8 ms) and, with reference outputs, an
accuracy loss of 0.0 per output (the stand-in computes none; every ``--loadInputs`` and
``--loadRefOutputs`` file must exist). The record (``--tuningCacheFile``) is the documented
JSON lines: the header, then one line per iteration; ``--continue --tuningCacheFile=<f>``
(nothing else allowed) rebuilds the argv from the header and resumes after the last
recorded iteration. The best route's plan goes to ``--saveEngine`` with
``Best iteration: <route> (gpu_time_ms=<t>)``. ``--setBuildRoute`` knobs and values must be
in the database. Test hook: ``FAKE_TRT_TUNING_STOP_AFTER=N`` fails the loop after N
iterations of this process (an interrupted search, for --continue).

Not emulated: the shape broadcast warnings for a partial
--minShapes/--optShapes/--maxShapes set, the positional grouping of --profile and --refPair
(with them the grouped options may simply repeat), and the option-specific parsing of values
the sweep never passes (I/O formats, tactic sources, device types, ...), accepted as text.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

PLAN_MAGIC = b"TRT-SWEEP-STANDIN-PLAN\n"
DEFAULT_VERSION = "101600"
DEFAULT_SM = 90
DEFAULT_ARGV_FILE = "/work/argv.json"
TEST_HOOKS = ("--failWith",)
HELP_KEYS = ("--help", "-h")
SECTIONS = ("Model", "Build", "System", "Inference", "Tuning", "Reporting")
DATA_TYPES = ("fp32", "fp16", "bf16", "int8", "fp8", "int32", "int64", "bool", "uint8", "int4")
MEM_POOLS = ("workspace", "dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM", "tacticSharedMem")
UNITS = {"B": 1, "G": 1 << 30, "K": 1 << 10, "M": 1 << 20}
UNIT_NAMES = {"B": "Bytes", "G": "Gibibytes", "K": "Kibibytes", "M": "Mebibytes"}
INT32 = (-(2**31), 2**31 - 1)
FLOAT32_MAX = 3.4028234663852886e38

# The performance summary of NVIDIA/TensorRT issue 4177 (../shared/fixtures/trtexec).
PERFORMANCE_SUMMARY = (
    "=== Performance summary ===",
    "Throughput: 130.298 qps",
    "Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, "
    "percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms",
    "Enqueue Time: min = 2.72876 ms, max = 15.0201 ms, mean = 7.63062 ms, median = 7.86694 ms, "
    "percentile(90%) = 10.1792 ms, percentile(95%) = 11.7217 ms, percentile(99%) = 14.1848 ms",
    "H2D Latency: min = 0.0065918 ms, max = 0.0698242 ms, mean = 0.0122212 ms, median = "
    "0.00814819 ms, percentile(90%) = 0.0253906 ms, percentile(95%) = 0.0270996 ms, "
    "percentile(99%) = 0.0515137 ms",
    "GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, median = "
    "7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, "
    "percentile(99%) = 12.9485 ms",
    "D2H Latency: min = 0.00390625 ms, max = 0.110596 ms, mean = 0.0100141 ms, median = "
    "0.00439453 ms, percentile(90%) = 0.0254517 ms, percentile(95%) = 0.0319824 ms, "
    "percentile(99%) = 0.0994873 ms",
    "Total Host Walltime: 3.00082 s",
    "Total GPU Compute Time: 2.96536 s",
)


class InvalidArgument(Exception):
    """trtexec's std::invalid_argument: the usage, then the message, then a failure."""


class OutOfRange(Exception):
    """std::out_of_range from a number conversion: trtexec's outer handler reports it."""


# -- the log ----------------------------------------------------------------------------
class Log:
    """trtexec's console format (samples/common/logging.h)."""

    def __init__(self, banner: str, version_code: str, build: str, cmdline: str) -> None:
        self.banner = banner
        self.version_code = version_code
        self.build = build
        self.cmdline = cmdline

    def result(self, result: str) -> None:
        line = self.banner.format(result=result, version_code=self.version_code,
                                  build=self.build, cmdline=self.cmdline)
        print(line, flush=True)

    def line(self, severity: str, text: str) -> None:
        stamp = time.strftime("%m/%d/%Y-%H:%M:%S", time.localtime())
        stream = sys.stdout if severity in ("I", "V") else sys.stderr
        print(f"[{stamp}] [{severity}] {text}", file=stream, flush=True)

    def info(self, text: str) -> None:
        self.line("I", text)

    def warning(self, text: str) -> None:
        self.line("W", text)

    def error(self, text: str) -> None:
        self.line("E", text)


# -- the tables -------------------------------------------------------------------------
def options_path() -> Path:
    if env := os.environ.get("FAKE_TRT_OPTIONS"):
        return Path(env)
    for base in (Path(__file__).resolve().parent, Path(sys.argv[0]).parent):
        candidate = base / "trtexec_options.json"
        if candidate.is_file():
            return candidate
    raise SystemExit("stand-in trtexec: trtexec_options.json not found (set FAKE_TRT_OPTIONS)")


def pick_table(doc: dict[str, Any], version_code: int) -> dict[str, Any]:
    for table in doc["tables"].values():
        low, high = table["version_range"]
        if low <= version_code <= high:
            return table
    raise SystemExit(f"stand-in trtexec: no option table for FAKE_TRT_VERSION={version_code}")


def usage(table: dict[str, Any]) -> None:
    """A short usage written from the table (trtexec prints its full --help here)."""
    src = table["source"]
    print(f"Usage (stand-in for trtexec {table['tensorrt']}; options of NVIDIA/TensorRT "
          f"{src['tag']} {src['options']}):")
    print("  trtexec [--onnx=<model.onnx> | --loadEngine=<file>] [options]")
    for section in SECTIONS:
        names = [o for o in table["options"] if o["section"] == section]
        if not names:
            continue
        print(f"=== {section} Options ===")
        for opt in names:
            spelled = opt["name"] + ("=<value>" if opt["takes_value"] else "")
            marks = []
            if opt.get("repeat"):
                marks.append("repeatable")
            if opt.get("deprecated"):
                marks.append("deprecated")
            if opt.get("noop"):
                marks.append("no-op")
            print(f"  {spelled}" + (f"  ({', '.join(marks)})" if marks else ""))
    print("=== Help ===")
    print("  --help, -h")
    sys.stdout.flush()


# -- C++ conversions the parser uses ----------------------------------------------------
_INT = re.compile(r"\s*[+-]?\d+")
_FLOAT = re.compile(
    r"\s*[+-]?(?:inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.IGNORECASE)


def stoi(text: str) -> int:
    match = _INT.match(text)
    if match is None:
        raise InvalidArgument("stoi")
    value = int(match.group(0))
    if not INT32[0] <= value <= INT32[1]:
        raise OutOfRange("stoi")
    return value


def stof(text: str, name: str = "stof") -> float:
    match = _FLOAT.match(text)
    if match is None:
        raise InvalidArgument(name)
    value = float(match.group(0))
    limit = FLOAT32_MAX if name == "stof" else sys.float_info.max
    if math.isfinite(value) and abs(value) > limit:
        raise OutOfRange(name)
    return value


def split(text: str, separator: str) -> list[str]:
    """splitToStringVec: '' has no items; otherwise as str.split."""
    return [] if text == "" else text.split(separator)


def name_and_value(item: str) -> tuple[str, str]:
    """splitNameAndValue: a quoted name, or everything before the last ':'."""
    quoted = item.split("'")
    if len(quoted) != 1:
        if len(quoted) != 3:
            raise InvalidArgument(
                f"Found invalid number of 's when parsing {item}. Expected: 2, received: "
                f"{len(quoted) - 1}. Please ensure that a singular comma is used within each "
                "comma-separated key-value pair for options like --inputIOFormats, --optShapes, "
                "--optShapesCalib, --layerPrecisions, etc.")
        return quoted[0] + quoted[1], quoted[2][1:]
    parts = item.split(":")
    return ":".join(parts[:-1]) if len(parts) > 1 else parts[0], parts[-1]


def unit_multiplier(text: str) -> int:
    last = text[-1:]
    if last.isdigit() or not last:
        return 1
    unit = last.upper()
    if unit not in UNITS:
        known = ", ".join(f"{u} ({UNIT_NAMES[u]})" for u in UNITS)
        raise InvalidArgument(f"Error parsing \"{text}\": invalid unit specifier '{unit}'. "
                              f"Valid base-2 unit suffixes include: {known}.")
    return UNITS[unit]


# -- the parser -------------------------------------------------------------------------
class Arg:
    def __init__(self, text: str, index: int) -> None:
        key, eq, value = text.partition("=")
        self.key = key
        self.value = value if eq else ""
        self.index = index


class Parser:
    """Reads the arguments in the order trtexec's AllOptions::parse reads them."""

    def __init__(self, table: dict[str, Any], sm: int, log: Log) -> None:
        self.table = table
        self.sm = sm
        self.log = log
        self.given: dict[str, list[str]] = {}
        self.unread: list[Arg] = []
        self.rules: dict[str, list[dict[str, Any]]] = {}
        for rule in table["rules"]:
            self.rules.setdefault(rule["after"], []).append(rule)

    def parse(self, args: list[Arg]) -> dict[str, list[str]]:
        self.unread = list(args)
        present = {a.key for a in args}
        for opt in self.table["options"]:
            name = opt["name"]
            found = [a for a in self.unread if a.key == name]
            if found and opt.get("skipped_if") not in self.given:
                repeat = opt["repeat"] or opt.get("repeat_with") in present
                taken = found if repeat else found[-1:]
                for arg in taken:
                    self.unread.remove(arg)
                    self.check_value(opt, arg.value)
                    warning = (opt.get("deprecated") or {}).get("warning")
                    if warning:
                        self.log.warning(warning)
                self.given[name] = [a.value for a in taken]
                for implied in opt.get("implies", []):
                    if self.sm >= implied.get("min_sm", 0) and \
                            self.sm not in implied.get("unless_sm", []):
                        self.given.setdefault(implied["flag"], [""])
            self.apply_rules(name)
        self.apply_rules("(end)")
        return self.given

    # values ---------------------------------------------------------------------------
    def check_value(self, opt: dict[str, Any], value: str) -> None:
        kind = opt["kind"]
        try:
            if kind == "int":
                stoi(value)
            elif kind == "float":
                stof(value)
            elif kind == "size":
                stoi(value)
                unit_multiplier(value)
            elif kind == "shapes":
                self.check_shapes(value)
            elif kind == "layer_types":
                self.check_layer_types(value, bool(opt.get("multi_types")))
            elif kind == "enum":
                self.check_enum(opt, value)
            elif kind == "mem_pool":
                self.check_mem_pool(value)
            elif kind == "preview":
                self.check_preview(opt, value)
        except InvalidArgument as exc:
            if opt.get("wrap_error"):
                raise InvalidArgument(str(exc) + opt["wrap_error"]) from None
            raise

    @staticmethod
    def check_shapes(value: str) -> None:
        for item in split(value, ","):
            _, dims = name_and_value(item)
            if dims != "scalar":
                for dim in split(dims, "x"):
                    stoi(dim)

    @staticmethod
    def check_layer_types(value: str, multi: bool) -> None:
        for item in split(value, ","):
            _, types = name_and_value(item)
            for dtype in (split(types, "+") if multi else [types]):
                if dtype not in DATA_TYPES:
                    raise InvalidArgument(f"Invalid DataType {dtype}")

    def check_enum(self, opt: dict[str, Any], value: str) -> None:
        if value == "" and not opt.get("empty_is_error"):
            return
        choices = opt["choices"]
        probe = value.lower() if opt.get("case_insensitive") else value
        if probe not in [c.lower() if opt.get("case_insensitive") else c for c in choices]:
            raise InvalidArgument(opt["error"].format(value=value))
        warning = opt.get("value_warnings", {}).get(value)
        if warning:
            self.log.warning(warning)

    @staticmethod
    def check_mem_pool(value: str) -> None:
        wrap = (" conversion failure: failed to parse --memPoolSize. Please double check your "
                "input string.")
        for item in split(value, ","):
            pool, size = name_and_value(item)
            try:
                size = size + "M" if size[-1:].isdigit() else size
                amount = stof(size, "stod") * unit_multiplier(size)
            except InvalidArgument as exc:
                raise InvalidArgument(str(exc) + wrap) from None
            if amount < 0:
                raise InvalidArgument(f"Negative memory pool size: {amount:.6f}")
            if pool not in MEM_POOLS and pool:
                raise InvalidArgument(f"Unknown memory pool: {pool}")

    def check_preview(self, opt: dict[str, Any], value: str) -> None:
        for item in split(value, ","):
            if item[:1] not in ("+", "-"):
                raise InvalidArgument(
                    "Preview features must be prefixed with + or -, indicating whether it "
                    "should be enabled or disabled respectively.")
            feature = item[1:]
            deprecated = opt.get("deprecated_features", {})
            if feature in deprecated:
                self.log.warning(deprecated[feature])
            elif feature not in opt["features"]:
                raise InvalidArgument(f"Unknown preview feature: {feature}")

    # rules ----------------------------------------------------------------------------
    def holds(self, when: dict[str, Any]) -> bool:
        given = self.given

        def nonempty(name: str) -> bool:
            return any(v != "" for v in given.get(name, []))

        def value(name: str) -> str:
            return given[name][-1] if given.get(name) else ""

        checks = (
            all(n in given for n in when.get("all", [])),
            not when.get("any") or any(n in given for n in when["any"]),
            not any(n in given for n in when.get("none", [])),
            not when.get("any_nonempty") or any(nonempty(n) for n in when["any_nonempty"]),
            not any(nonempty(n) for n in when.get("none_nonempty", [])),
            all(value(n) in vs for n, vs in when.get("value_in", {}).items()),
            all(value(n) not in vs for n, vs in when.get("value_not_in", {}).items()),
            self.sm >= when.get("min_sm", 0),
            not when.get("unread") or any(a.key in when["unread"] for a in self.unread),
        )
        return all(checks)

    def apply_rules(self, anchor: str) -> None:
        for rule in self.rules.get(anchor, []):
            if not self.holds(rule["when"]):
                continue
            if "error" in rule:
                raise InvalidArgument(rule["error"])
            for flag in rule.get("drop", []):
                self.given.pop(flag, None)
            if "warning" in rule:
                self.log.warning(rule["warning"])
            if "info" in rule:
                self.log.info(rule["info"])


# -- the run after a successful parse ---------------------------------------------------
def value_of(given: dict[str, list[str]], name: str) -> str | None:
    values = given.get(name)
    return values[-1] if values else None


def write_plan(engine: Path, onnx_bytes: bytes, version: str, argv: list[str]) -> None:
    header = json.dumps({"version": version, "argv": argv}, separators=(",", ":"))
    engine.write_bytes(PLAN_MAGIC + header.encode() + b"\n" + onnx_bytes)


def run(table: dict[str, Any], given: dict[str, list[str]], log: Log, version: str,
        argv: list[str]) -> int:
    """What a successful trtexec prints and writes, in its order."""
    failure = int(table["on_parse_error"]["exit_code"])
    route = value_of(given, "--setBuildRoute")
    if route:
        problem = check_route(route.split(), fixed_only=True)
        if problem:
            log.error(f"stand-in trtexec: --setBuildRoute: {problem}")
            log.result("FAILED")
            return failure
    onnx = value_of(given, "--onnx")
    log.info("=== Model Options ===")
    log.info(f"Format: {'ONNX' if onnx is not None else '*'}")
    log.info(f"Model: {onnx or ''}")
    log.info("Output:")
    log.info("")
    for section in ("Build", "System", "Inference", "Reporting"):
        log.info(f"=== {section} Options ===")
        log.info("")
    log.info("TensorRT version: " + ".".join(str(p) for p in decode(version)))
    log.info("Loading standard plugins")

    onnx_bytes = b""
    loaded = value_of(given, "--loadEngine")
    if loaded is not None:
        try:
            Path(loaded).read_bytes()
        except OSError:
            log.error(f"Cannot open engine file: {loaded}")
            log.error("Failed to create engine from model or file.")
            log.error("Engine set up failed")
            log.result("FAILED")
            return failure
    else:
        log.info("Start parsing network model.")
        try:
            onnx_bytes = Path(onnx or "").read_bytes()
        except OSError:
            log.error("Failed to parse onnx file")
            log.error("Parsing model failed")
            log.error("Failed to create engine from model or file.")
            log.error("Engine set up failed")
            log.result("FAILED")
            return failure
        try:  # test hook: is the ONNX folder mounted read-only?
            (Path(onnx or "").parent / "written-by-trtexec").write_text("x")
            log.warning("the ONNX folder is writable")
        except OSError:
            log.info("the ONNX folder is read-only")
        log.info("Finished parsing network model. Parse time: 0.0123")
        try:
            cache = value_of(given, "--timingCacheFile")
            if cache:
                Path(cache).write_bytes(b"stand-in timing cache\n")
            engine = value_of(given, "--saveEngine")
            size = len(PLAN_MAGIC) + len(onnx_bytes) + 64
            if engine:
                write_plan(Path(engine), onnx_bytes, version, argv)
                size = Path(engine).stat().st_size
        except OSError:
            log.error("Saving engine to file failed.")
            log.error("Engine set up failed")
            log.result("FAILED")
            return failure
        log.info(f"Created engine with size: {size / (1 << 20):.6g} MiB")
        log.info("Engine built in 1.5 sec.")
    layer_info = value_of(given, "--exportLayerInfo")
    if layer_info:
        try:
            Path(layer_info).write_text(json.dumps(layer_information(table)))
        except OSError:
            log.error(f"stand-in trtexec: cannot write --exportLayerInfo={layer_info}")
            log.result("FAILED")
            return failure
    if "--skipInference" not in given:
        duration = stof(value_of(given, "--duration") or "3")
        if duration > 5:
            time.sleep(duration)
        log.info("")
        for line in PERFORMANCE_SUMMARY:
            log.info(line)
    log.result("PASSED")
    return 0


def layer_information(table: dict[str, Any]) -> dict[str, Any]:
    """The engine inspector's JSON root in the table's release layout, without layers."""
    major = int(str(table["tensorrt"]).split(".")[0])
    return {"Layers": [], ("I/O Tensors" if major >= 11 else "Bindings"): []}


# -- build routes (11.1+) ----------------------------------------------------------------
KNOB_DATABASE: dict[str, Any] = {
    "tuner_version": "stand-in",
    "tuner_options": [
        {"option": f"-{name}", "allowed_values": f"-{name}=[on|off]", "default_value": "on",
         "help": "a knob named in NVIDIA's trtexec README/sampleTuning.h (stand-in entry)"}
        for name in ("match_ragged_mha", "copy_ppg", "conv_use_long_w", "reshape_ppg",
                     "transpose_ppg")],
}
_KNOBS = {k["option"]: k for k in KNOB_DATABASE["tuner_options"]}


def _allowed(knob: dict[str, Any]) -> list[str]:
    return knob["allowed_values"].split("=", 1)[1].strip("[]").split("|")


def parse_expression(tokens: list[str]) -> list[tuple[str, list[str], bool]]:
    """(knob, values, fixed) per token; InvalidArgument naming the first bad one."""
    out = []
    for token in tokens:
        knob, eq, values = token.partition("=")
        if not eq or knob not in _KNOBS:
            raise InvalidArgument(f"unknown knob or malformed token '{token}'")
        fixed = not (values.startswith("[") and values.endswith("]"))
        listed = [values] if fixed else [v.strip() for v in values[1:-1].split("|") if v.strip()]
        bad = [v for v in listed if v not in _allowed(_KNOBS[knob])]
        if bad or not listed:
            raise InvalidArgument(f"value(s) {bad or listed} not allowed for {knob} "
                                  f"({_KNOBS[knob]['allowed_values']})")
        out.append((knob, listed, fixed))
    return out


def check_route(tokens: list[str], fixed_only: bool = False) -> str:
    try:
        parsed = parse_expression(tokens)
    except InvalidArgument as exc:
        return str(exc)
    if fixed_only and not all(fixed for _, _, fixed in parsed):
        return "a route takes '-knob=value' tokens only"
    return ""


def _route(values: list[tuple[str, str]]) -> str:
    return " ".join(f"{k}={v}" for k, v in values)


def expand(parsed: list[tuple[str, list[str], bool]], search: str) -> list[str]:
    if search == "full":
        routes: list[list[tuple[str, str]]] = [[]]
        for knob, values, _ in parsed:
            routes = [[*r, (knob, v)] for r in routes for v in values]
        return [_route(r) for r in routes]
    base = [(k, vs[0] if fixed else _KNOBS[k]["default_value"]) for k, vs, fixed in parsed]
    out = [_route(base)]
    for index in reversed(range(len(parsed))):
        knob, values, fixed = parsed[index]
        for value in values:
            if not fixed and value != base[index][1]:
                changed = list(base)
                changed[index] = (knob, value)
                out.append(_route(changed))
    return out


def gpu_time(route: str) -> float:
    import hashlib

    return 7.0 + int(hashlib.sha256(route.encode()).hexdigest()[:6], 16) % 1000 / 1000


_PATH_OPTIONS = ("--onnx", "--saveEngine", "--timingCacheFile", "--exportLayerInfo",
                 "--exportProfile", "--tuneBuildRouteFile")
_PAIR_OPTIONS = ("--loadInputs", "--loadRefOutputs")


def absolute_argv(argv: list[str]) -> list[str]:
    """resolveArgvPaths: file options with absolute paths (name:path pairs too)."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in _PATH_OPTIONS and value:
            arg = f"{key}={os.path.abspath(value)}"
        elif eq and key in _PAIR_OPTIONS and value:
            pairs = [name_and_value(item) for item in split(value, ",")]
            arg = key + "=" + ",".join(f"{n}:{os.path.abspath(p)}" for n, p in pairs)
        out.append(arg)
    return out


def tuning_loop(table: dict[str, Any], argv: list[str], sm: int, log: Log, version: str
                ) -> int:
    """runTuningLoop: --continue reconstruction, parse, expand, iterate, promote the best."""
    failure = int(table["on_parse_error"]["exit_code"])

    def fail(message: str) -> int:
        log.error(message)
        log.result("FAILED")
        return failure

    resume_from = 0
    effective = list(argv)
    if any(Arg(a, 0).key == "--continue" for a in argv):
        cache = ""
        for arg in argv:
            if arg == "--continue":
                continue
            if not arg.startswith("--tuningCacheFile="):
                return fail(f"--continue requires exactly --tuningCacheFile=<path>; no other "
                            f"options are allowed (got '{arg}'). All options come from the "
                            "cache header.")
            cache = arg.split("=", 1)[1]
        if not cache:
            return fail("--continue requires --tuningCacheFile=<path> on the command line.")
        try:
            lines = [ln for ln in Path(cache).read_text().splitlines() if ln.strip()]
            header = json.loads(lines[0])
            stored, expr = header["argv"], header["tuning_expr"]
        except (OSError, IndexError, ValueError, KeyError, TypeError):
            return fail(f"--continue: failed to read cache header from {cache}")
        resume_from = len(lines) - 1
        effective = [a for a in stored[1:] if not a.startswith(
            ("--tuneBuildRoutes=", "--tuneBuildRouteFile=", "--tuningCacheFile="))
            and a != "--continue"]
        effective += [f"--tuneBuildRoutes={expr}", f"--tuningCacheFile={cache}"]
        log.info(f"--continue: resuming from iteration {resume_from} using "
                 f"{len(effective) + 1} args reconstructed from cache header.")
    args = [Arg(text, i) for i, text in enumerate(effective, 1)]
    parser = Parser(table, sm, log)
    try:
        given = parser.parse(args)
        if parser.unread:
            raise InvalidArgument(table["unknown_option"].format(
                key=parser.unread[0].key, value=parser.unread[0].value))
        expr = value_of(given, "--tuneBuildRoutes") or ""
        expr_file = value_of(given, "--tuneBuildRouteFile")
        if expr and expr_file:
            raise InvalidArgument("Cannot specify both --tuneBuildRoutes and "
                                  "--tuneBuildRouteFile.")
        search = value_of(given, "--tuningSearch") or "fast"
        if search == "mixed" and "--dryRun" in given:
            raise InvalidArgument("--dryRun is incompatible with --tuningSearch=mixed.")
        if expr_file:
            try:
                expr = " ".join(Path(expr_file).read_text().split())
            except OSError:
                raise InvalidArgument(f"Cannot open --tuneBuildRouteFile: {expr_file}") from None
        refs = given.get("--loadRefOutputs", [])
        threshold = value_of(given, "--accuracyThreshold")
        if (refs or "--refPair" in given) and not (threshold and stof(threshold) > 0):
            raise InvalidArgument("--accuracyThreshold (with a positive value) is required "
                                  "when --loadRefOutputs or --refPair is set.")
        if (refs or "--refPair" in given) and "--skipInference" in given:
            raise InvalidArgument("--loadRefOutputs/--refPair cannot be used with "
                                  "--skipInference: accuracy validation needs the inference "
                                  "phase to run.")
    except InvalidArgument as exc:
        usage(table)
        return fail(str(exc))
    engine = value_of(given, "--saveEngine")
    if refs and not engine and "--dryRun" not in given:
        return fail("--tuneBuildRoutes with --loadRefOutputs requires --saveEngine to persist "
                    "the best engine selected by accuracy validation.")
    if not engine:
        log.warning("--tuneBuildRoutes without --saveEngine: best engine will not be saved.")
    try:
        parsed = parse_expression(expr.split())
    except InvalidArgument as exc:
        return fail(f"Failed to parse --tuneBuildRoutes expression: {exc}")
    routes = expand(parsed, "fast" if search == "mixed" else search)
    log.info(f"Expanded to {len(routes)} build route configurations")
    if "--dryRun" in given:
        log.info(f"--dryRun: {len(routes)} build routes would be tried:")
        for i, route in enumerate(routes):
            log.info(f"[{i}]:{route}")
        log.result("PASSED")
        return 0
    for value in given.get("--loadInputs", []) + refs:
        for item in split(value, ","):
            _, path = name_and_value(item)
            if not Path(path).is_file():
                return fail(f"stand-in trtexec: cannot read {path} (--loadInputs/"
                            "--loadRefOutputs)")
    outputs = [name_and_value(item)[0] for item in split(refs[0], ",")] if refs else []
    record_path = value_of(given, "--tuningCacheFile")
    if record_path and not resume_from:
        default = " ".join(f"{k['option']}={k['default_value']}"
                           for k in KNOB_DATABASE["tuner_options"])
        files: dict[str, Any] = {}
        if value_of(given, "--onnx"):
            files["onnx"] = os.path.abspath(value_of(given, "--onnx") or "")
        if engine:
            files["save_engine"] = os.path.abspath(engine)
        header = {"tuner_version": KNOB_DATABASE["tuner_version"],
                  "accuracy_algorithm": value_of(given, "--accuracyAlgorithm") or "l0",
                  "accuracy_parameter": {"atol": stof(value_of(given, "--atol") or "1e-5"),
                                         "rtol": stof(value_of(given, "--rtol") or "1e-5"),
                                         "epsilon": stof(threshold or "0")},
                  "searching_algorithm": search, "command_line": " ".join([sys.argv[0], *argv]),
                  "default_build_route": default, "tuning_expr": expr, "files": files,
                  "argv": [sys.argv[0], *absolute_argv(effective)]}
        Path(record_path).write_text(json.dumps(header) + "\n")
    best: tuple[float, str] | None = None
    stop_after = int(os.environ.get("FAKE_TRT_TUNING_STOP_AFTER", "0") or 0)
    done = 0
    phases = [routes]
    timeout = stoi(value_of(given, "--tuningTimeOut") or "-1")
    started = time.monotonic()
    phase_index = 0
    while phase_index < len(phases):
        phase = phases[phase_index]
        log.info(f"Tuning phase{phase_index + 1}: {len(phase)} iterations.")
        times: list[float] = []
        for i, route in enumerate(phase):
            t = gpu_time(route)
            times.append(t)
            if phase_index == 0 and i < resume_from:
                best = min(best, (t, route)) if best else (t, route)
                continue
            if timeout > 0 and time.monotonic() - started >= timeout:
                log.info(f"Tuning timeout reached ({timeout}s); stopping early.")
                phases = phases[:phase_index + 1]
                break
            if stop_after and done >= stop_after:
                return fail(f"stand-in trtexec: stopped after {done} iterations "
                            "(FAKE_TRT_TUNING_STOP_AFTER), as an interrupted search would")
            log.info(f"iteration [{i}]: {route}")
            for line in PERFORMANCE_SUMMARY:
                log.info(line)
            if engine and "--saveAllEngines" in given:
                write_plan(Path(f"{engine}.iter{i}"), Path(value_of(given, "--onnx") or "")
                           .read_bytes(), version, argv)
            if record_path:
                with open(record_path, "a") as record:
                    record.write(json.dumps({
                        "iter": i, "build_route": route, "crash": False, "error_message": "",
                        "accuracy_loss": {n: 0.0 for n in outputs} or None,
                        "gpu_time": t}) + "\n")
            best = min(best, (t, route)) if best else (t, route)
            done += 1
        if search == "mixed" and phase_index == 0 and len(phases) == 1:
            positive = [r for r, t in zip(phase[1:], times[1:], strict=True) if t < times[0]]
            knobs = [next(tok.split("=")[0] for tok, b in zip(r.split(), phase[0].split(),
                                                                strict=True) if tok != b)
                     for r in positive]
            if len(knobs) > 1:
                log.info(f"Mixed search: {len(knobs)} positive knobs identified; entering "
                         "phase 2.")
                sub = [(k, vs, f) if k in knobs else (k, [vs[0] if f else
                                                          _KNOBS[k]["default_value"]], True)
                       for k, vs, f in parsed]
                phases.append(expand(sub, "full"))
            else:
                log.info(f"Mixed search: {len(knobs)} positive knob(s); skipping phase 2 "
                         "(need >1).")
        phase_index += 1
    if best is None:
        return fail("No tuning iteration succeeded; no engine written.")
    if engine:
        onnx = value_of(given, "--onnx") or ""
        write_plan(Path(engine), Path(onnx).read_bytes(), version, argv)
    layer_info = value_of(given, "--exportLayerInfo")
    if layer_info:
        Path(layer_info).write_text(json.dumps(layer_information(table)))
    log.info(f"Best iteration: {best[1]} (gpu_time_ms={best[0]:g})")
    # finalizeBestEngine reports against phase 1's route count, phase 2 included or not.
    log.info(f"Tuning summary: {done + resume_from} / {len(phases[0])} iterations "
             "succeeded.")
    log.result("PASSED")
    return 0


def decode(code: str) -> tuple[int, int, int]:
    n = int(code)
    if n >= 100000:
        return n // 10000, (n // 100) % 100, n % 100
    return n // 1000, (n // 100) % 10, n % 100


def record_argv(argv: list[str]) -> None:
    target = os.environ.get("FAKE_TRT_ARGV_FILE", DEFAULT_ARGV_FILE)
    if target:
        with contextlib.suppress(OSError):  # a read-only /work only loses the record
            Path(target).write_text(json.dumps(argv))


def main(argv: list[str]) -> int:
    version = os.environ.get("FAKE_TRT_VERSION", DEFAULT_VERSION)
    doc = json.loads(options_path().read_text())
    table = pick_table(doc, int(version))
    build = os.environ.get("FAKE_TRT_BUILD", str(table["build"]))
    sm = int(os.environ.get("FAKE_TRT_SM", str(DEFAULT_SM)))
    log = Log(table["banner"], version, build, " ".join([sys.argv[0], *argv]))
    log.result("RUNNING")
    args = [Arg(text, i) for i, text in enumerate(argv, 1)]

    if any(a.key in HELP_KEYS for a in args):
        usage(table)
        return int(table["on_help"]["exit_code"])
    record_argv(argv)
    tuning = {"--tuneBuildRoutes", "--tuneBuildRouteFile", "--continue"}
    known = {o["name"] for o in table["options"]}
    if any(a.key in tuning for a in args) and tuning <= known:
        return tuning_loop(table, argv, sm, log, version)
    help_route = next((a for a in args if a.key == "--helpBuildRoute"), None)
    if help_route is not None and "--helpBuildRoute" in known:
        wanted = help_route.value.lstrip("-")
        if not wanted:
            print(json.dumps(KNOB_DATABASE, indent=1))
            return 0
        if f"-{wanted}" not in _KNOBS:
            log.error(f"Unknown build route knob: {wanted}; run --helpBuildRoute for the list.")
            return 1
        print(json.dumps(_KNOBS[f"-{wanted}"], indent=1))
        return 0
    hook = [a for a in args if a.key in TEST_HOOKS]
    if hook:
        log.error(f"stand-in trtexec failing on purpose ({hook[-1].key}={hook[-1].value}, a "
                  "test hook, not a trtexec option)")
        log.result("FAILED")
        try:
            return stoi(hook[-1].value)
        except (InvalidArgument, OutOfRange):
            return 1
    if not args:
        usage(table)
        outcome = table["on_no_arguments"]
        if outcome["result_line"]:
            log.result(outcome["result_line"])
        return int(outcome["exit_code"])

    on_error = table["on_parse_error"]
    parser = Parser(table, sm, log)
    try:
        given = parser.parse(args)
    except InvalidArgument as exc:
        usage(table)
        log.error(str(exc))
        if on_error["result_line"]:
            log.result(on_error["result_line"])
        return int(on_error["exit_code"])
    except OutOfRange as exc:
        uncaught = table["on_uncaught_exception"]
        log.error(uncaught["message"].format(what=exc))
        log.result(uncaught["result_line"])
        return int(uncaught["exit_code"])
    if parser.unread:
        usage(table)
        for arg in parser.unread:
            log.error(table["unknown_option"].format(key=arg.key, value=arg.value))
        if on_error["result_line"]:
            log.result(on_error["result_line"])
        return int(on_error["exit_code"])
    return run(table, given, log, version, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
