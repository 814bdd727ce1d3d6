"""parse_trtexec_log against real trtexec output (tests/fixtures/trtexec/SOURCES.md)."""

from __future__ import annotations

import pytest

from sweep.builder.trtexec_log import TrtexecReport, decode_version, parse_trtexec_log
from tests.support.paths import FIXTURES

LOGS = FIXTURES / "trtexec"


@pytest.fixture(autouse=True, scope="module")
def _fixtures_are_vendored() -> None:
    if not (LOGS / "SOURCES.md").is_file():
        pytest.fail(f"the trtexec log fixtures are missing from {LOGS}: they are part of "
                    "the repository (tests/fixtures/trtexec)")


def report(name: str) -> TrtexecReport:
    return parse_trtexec_log((LOGS / name).read_text())


def test_every_fixture_parses_and_is_listed_in_sources() -> None:
    logs = sorted(LOGS.glob("*.log"))
    assert logs, "no fixtures"
    sources = (LOGS / "SOURCES.md").read_text()
    for path in logs:
        assert path.name in sources, f"{path.name} has no expected figures in SOURCES.md"
        r = parse_trtexec_log(path.read_text())
        metrics = r.metrics()
        assert all(k.startswith("trt_") and isinstance(v, float) for k, v in metrics.items())
        # Everything the report lacks is named, nothing it has is.
        assert ("throughput_qps" in r.missing) == (r.throughput_qps is None)


def test_trt10_issue4177_full_summary() -> None:
    r = report("trt10_perf_TensorRT-issue4177.log")
    assert r.throughput_qps == 130.298
    assert r.latency is not None and r.gpu_compute is not None and r.enqueue is not None
    assert (r.latency.min, r.latency.mean, r.latency.median) == (5.38672, 7.60628, 7.16092)
    assert (r.latency.p90, r.latency.p95, r.latency.p99) == (10.2996, 10.8698, 12.9675)
    assert (r.gpu_compute.mean, r.gpu_compute.p99) == (7.58404, 12.9485)
    assert r.enqueue.mean == 7.63062
    assert r.h2d is not None and r.h2d.mean == 0.0122212
    assert r.d2h is not None and r.d2h.mean == 0.0100141
    assert r.host_walltime_seconds == 3.00082
    assert r.total_gpu_compute_seconds == 2.96536
    m = r.metrics(batch=16)
    assert m["trt_throughput_qps"] == 130.298
    assert m["trt_throughput_items_per_s"] == pytest.approx(130.298 * 16)
    assert m["trt_latency_p99_ms"] == 12.9675
    assert m["trt_gpu_compute_mean_ms"] == 7.58404
    assert m["trt_total_gpu_compute_s"] == 2.96536
    assert "total_gpu_compute_seconds" not in r.missing and "latency.p90" not in r.missing


def test_trt10_ptlflow_cut_log() -> None:
    r = report("trt10_perf_ptlflow-issue65.log")
    assert r.throughput_qps == 32.7261
    assert r.latency is not None and r.gpu_compute is not None
    assert (r.latency.mean, r.latency.median) == (30.7571, 30.7585)
    assert (r.latency.p90, r.latency.p95, r.latency.p99) == (30.8303, 30.8396, 30.8523)
    assert r.gpu_compute.mean == 30.3322
    # The log was cut before the last line: the parser says so instead of guessing.
    assert r.total_gpu_compute_seconds is None
    assert "total_gpu_compute_seconds" in r.missing
    assert "trt_total_gpu_compute_s" not in r.metrics()


def test_trt8_yolov7_no_p90_p95_and_cv_warning() -> None:
    r = report("trt8_perf_yolov7-pr329.log")
    assert r.throughput_qps == 716.632
    assert r.latency is not None
    assert (r.latency.mean, r.latency.median, r.latency.p99) == (1.38629, 1.38037, 1.55853)
    assert r.latency.p90 is None and r.latency.p95 is None
    assert {"latency.p90", "latency.p95"} <= set(r.missing)
    assert r.gpu_compute_cv_percent == 2.10486
    assert any("coefficient of variance = 2.10486%" in w for w in r.warnings)
    assert "trt_latency_p90_ms" not in r.metrics()


def test_trt7_end_to_end_and_no_gpu_compute() -> None:
    r = report("trt7_perf_TensorRT-issue1221.log")
    assert r.throughput_qps == 1.57184
    assert r.latency is not None
    assert (r.latency.mean, r.latency.median, r.latency.p99) == (636.196, 636.003, 638.123)
    assert r.e2e_host_latency is not None and r.e2e_host_latency.mean == 636.196
    assert r.gpu_compute is None and "gpu_compute" in r.missing
    assert r.metrics()["trt_e2e_host_latency_mean_ms"] == 636.196


def test_trt10_header_version() -> None:
    r = report("trt10_header_TensorRT-issue4036.log")
    assert r.tensorrt_version == (10, 2, 0)
    assert r.version_string == "10.2.0"
    assert r.throughput_qps is None and "throughput_qps" in r.missing
    assert r.metrics() == {}


def test_trt10_build_parse_time_and_tf32_notice() -> None:
    r = report("trt10_build_TensorRT-issue3834.log")
    assert r.parse_seconds == 17.0463
    assert r.metrics()["trt_parse_s"] == 17.0463
    tf32 = [w for w in r.warnings if "TF32" in w]
    assert tf32 == ["BuilderFlag::kTF32 is set but hardware does not support TF32. "
                    "Disabling TF32."]  # printed twice in the log, kept once


@pytest.mark.parametrize(("code", "version"), [
    ("100200", (10, 2, 0)), ("8601", (8, 6, 1)), ("7103", (7, 1, 3)), ("110300", (11, 3, 0)),
    ("101300", (10, 13, 0))])
def test_decode_version(code: str, version: tuple[int, int, int]) -> None:
    assert decode_version(code) == version


def test_build_lines_and_status() -> None:
    text = "\n".join([
        "&&&& RUNNING TensorRT.trtexec [TensorRT v101300] # trtexec --onnx=m.onnx",
        "[11/25/2026-10:00:00] [I] Finished parsing network model. Parse time: 0.5",
        "[11/25/2026-10:00:09] [I] [TRT] Engine generation completed in 8.9 seconds.",
        "[11/25/2026-10:00:09] [I] Engine built in 9.25 sec.",
        "[11/25/2026-10:00:09] [I] Created engine with size: 12.5 MiB",
        "[11/25/2026-10:00:09] [W] [TRT] Weak typing APIs are deprecated.",
        "&&&& PASSED TensorRT.trtexec [TensorRT v101300] # trtexec --onnx=m.onnx",
    ])
    r = parse_trtexec_log(text)
    assert r.tensorrt_version == (10, 13, 0)
    assert (r.parse_seconds, r.build_seconds, r.engine_size_mib) == (0.5, 9.25, 12.5)
    assert r.passed is True
    assert "Weak typing APIs are deprecated." in r.warnings
