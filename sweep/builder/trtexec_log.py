"""Read trtexec's console log: version, build/parse times and the performance summary.

trtexec prints one "=== Performance summary ===" block after its inference pass; its
wording has been stable since TensorRT 7 but fields come and go between versions (8.x
prints no p90/p95, 7.x no GPU compute line, a cut-off log has no totals). The parser
therefore never assumes a line is there: every figure is optional and the ones it could
not find are listed in ``missing``, so a sweep records what it has instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

# "[TensorRT v100200]" (10.x: MMmmpp) or "[TensorRT v8601]" (8.x: Mmpp).
_VERSION = re.compile(r"&&&& RUNNING TensorRT\.trtexec \[TensorRT v(\d+)\]")
_PARSE = re.compile(r"Finished parsing network model\. Parse time: ([0-9.eE+-]+)")
_BUILT = re.compile(r"Engine built in ([0-9.eE+-]+) sec")
_GENERATED = re.compile(r"Engine generation completed in ([0-9.eE+-]+) seconds")
_SIZE = re.compile(r"Created engine with size: ([0-9.eE+-]+) MiB")
_THROUGHPUT = re.compile(r"\] Throughput: ([0-9.eE+-]+) qps")
_WALLTIME = re.compile(r"Total Host Walltime: ([0-9.eE+-]+) s")
_TOTAL_GPU = re.compile(r"Total GPU Compute Time: ([0-9.eE+-]+) s")
_CV = re.compile(r"coefficient of variance = ([0-9.eE+-]+)%")
_STATUS = re.compile(r"&&&& (PASSED|FAILED) TensorRT\.trtexec")
# One "key = value ms" pair of a statistics line. Percentiles are spelled
# "percentile(99%)" since TensorRT 7.1 and "percentile: 99%" before.
_PAIR = re.compile(
    r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\)|percentile: (\d+(?:\.\d+)?)%)"
    r" = ([0-9.eE+-]+) ms")
_PERCENTILES = {90.0: "p90", 95.0: "p95", 99.0: "p99"}
_SEVERITY = re.compile(r"\] \[([WEF])\] (.*)$")

# Statistics lines of the performance summary, by their label in the log.
_SERIES = {
    "Latency": "latency",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
    "End-to-End Host Latency": "e2e_host_latency",
}

# Notices worth keeping although trtexec prints them at [I] level: they change what the
# figures mean (a TF32 request silently dropped makes an "fp32+tf32" engine plain fp32).
_NOTICES = (
    "is set but hardware does not support",
    "Disabling TF32",
    "GPU compute time is unstable",
    "random scales",  # int8 without calibration: accuracy is meaningless
    "Weak typing",
    "deprecated",
)


def decode_version(code: str | int) -> tuple[int, int, int]:
    """TensorRT's packed version number -> (major, minor, patch).

    10.x and later pack it as major*10000 + minor*100 + patch (v100200 = 10.2.0);
    8.x and earlier as major*1000 + minor*100 + patch (v8601 = 8.6.1).
    """
    n = int(code)
    if n >= 100000:
        return n // 10000, (n // 100) % 100, n % 100
    return n // 1000, (n // 100) % 10, n % 100


@dataclass(frozen=True)
class Stats:
    """One statistics line of the performance summary, in milliseconds."""

    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass
class TrtexecReport:
    """Everything the sweep takes from one trtexec log. ``None`` means "not in the log"."""

    tensorrt_version: tuple[int, int, int] | None = None
    parse_seconds: float | None = None
    build_seconds: float | None = None
    engine_size_mib: float | None = None
    throughput_qps: float | None = None
    latency: Stats | None = None
    enqueue: Stats | None = None
    h2d: Stats | None = None
    gpu_compute: Stats | None = None
    d2h: Stats | None = None
    e2e_host_latency: Stats | None = None
    host_walltime_seconds: float | None = None
    total_gpu_compute_seconds: float | None = None
    gpu_compute_cv_percent: float | None = None
    passed: bool | None = None
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def version_string(self) -> str | None:
        if self.tensorrt_version is None:
            return None
        return ".".join(str(p) for p in self.tensorrt_version)

    def metrics(self, batch: int | None = None) -> dict[str, float]:
        """Flat ``trt_*`` figures for MLflow; absent figures are left out, never zero.

        With ``batch`` (the inference shape's batch size) the throughput is also given in
        items per second: trtexec counts one query per enqueue, whatever its batch, so
        T-one's "chunks/s" figures are qps times the batch.
        """
        out: dict[str, float] = {}

        def put(name: str, value: float | None) -> None:
            if value is not None:
                out[name] = float(value)

        put("trt_parse_s", self.parse_seconds)
        put("trt_build_s", self.build_seconds)
        put("trt_engine_size_mib", self.engine_size_mib)
        put("trt_throughput_qps", self.throughput_qps)
        if batch and self.throughput_qps is not None:
            put("trt_throughput_items_per_s", self.throughput_qps * batch)
        for series in _SERIES.values():
            stats: Stats | None = getattr(self, series)
            if stats is None:
                continue
            for f in fields(Stats):
                put(f"trt_{series}_{f.name}_ms", getattr(stats, f.name))
        put("trt_host_walltime_s", self.host_walltime_seconds)
        put("trt_total_gpu_compute_s", self.total_gpu_compute_seconds)
        put("trt_gpu_compute_cv_pct", self.gpu_compute_cv_percent)
        return out


def _stats(text: str) -> Stats:
    values: dict[str, float] = {}
    for m in _PAIR.finditer(text):
        key, pct_new, pct_old, value = m.group(1), m.group(2), m.group(3), float(m.group(4))
        pct = pct_new or pct_old
        if pct is not None:
            named = _PERCENTILES.get(float(pct))
            if named is None:  # e.g. --percentile=99.9: not one of the fields kept
                continue
            key = named
        values[key] = value
    return Stats(**values)


def parse_trtexec_log(text: str) -> TrtexecReport:
    """Parse a whole trtexec console log (build and/or inference)."""
    report = TrtexecReport()
    summary = False
    for line in text.splitlines():
        if report.tensorrt_version is None and (m := _VERSION.search(line)):
            report.tensorrt_version = decode_version(m.group(1))
        if "=== Performance summary ===" in line:
            summary = True
        if (m := _PARSE.search(line)) is not None:
            report.parse_seconds = float(m.group(1))
        elif (m := _BUILT.search(line) or _GENERATED.search(line)) is not None:
            # "Engine built in" (trtexec) wins over the builder's own "generation completed".
            if report.build_seconds is None or "Engine built in" in line:
                report.build_seconds = float(m.group(1))
        elif (m := _SIZE.search(line)) is not None:
            report.engine_size_mib = float(m.group(1))
        elif (m := _THROUGHPUT.search(line)) is not None:
            report.throughput_qps = float(m.group(1))
        elif (m := _WALLTIME.search(line)) is not None:
            report.host_walltime_seconds = float(m.group(1))
        elif (m := _TOTAL_GPU.search(line)) is not None:
            report.total_gpu_compute_seconds = float(m.group(1))
        elif (m := _STATUS.search(line)) is not None:
            report.passed = m.group(1) == "PASSED"
        elif summary or " ms, " in line:
            for label, attr in _SERIES.items():
                # "Latency:" must not match "H2D Latency:" or "End-to-End Host Latency:".
                marker = f"] {label}: "
                if marker in line and "min = " in line:
                    setattr(report, attr, _stats(line.split(marker, 1)[1]))
                    break
        if (m := _CV.search(line)) is not None:
            report.gpu_compute_cv_percent = float(m.group(1))
        if (m := _SEVERITY.search(line)) is not None or any(n in line for n in _NOTICES):
            message = m.group(2).strip() if m else line.split("] ", 2)[-1].strip()
            message = message.removeprefix("[TRT] ")
            if message and message not in report.warnings:
                report.warnings.append(message)
    report.missing = _missing(report)
    return report


def _missing(report: TrtexecReport) -> list[str]:
    absent: list[str] = []
    for name in ("tensorrt_version", "parse_seconds", "build_seconds", "throughput_qps",
                 "host_walltime_seconds", "total_gpu_compute_seconds"):
        if getattr(report, name) is None:
            absent.append(name)
    for series in ("latency", "enqueue", "h2d", "gpu_compute", "d2h"):
        stats: Stats | None = getattr(report, series)
        if stats is None:
            absent.append(series)
            continue
        absent.extend(f"{series}.{f.name}" for f in fields(Stats)
                      if getattr(stats, f.name) is None)
    return absent
