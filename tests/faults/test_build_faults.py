"""Faults before and during the build: a builder that fails, one that runs out of time, a
disk that fills up under the engine cache, an ONNX that is missing, corrupt or not the
configured model."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from mlflow.entities import Run
from onnx import helper

from sweep.cli import ExitCode
from tests.faults.conftest import Row, SweepProcess, assert_clean, run_sweep
from tests.support.paths import DEMO, DEMO_ONNX

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]


def crashing_onnx(path: Path) -> Path:
    """The demo model with one Sigmoid turned into an op nobody implements: the interface
    (inputs, outputs, shapes) is intact, so the sweep only finds out when the builder's
    ONNX Runtime session refuses the graph, as with an exporter's custom op."""
    model = onnx.load(str(DEMO_ONNX))
    node = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    node.op_type, node.domain = "NoSuchOp", "trt_sweep.fault"
    model.opset_import.append(helper.make_opsetid("trt_sweep.fault", 1))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def builder_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepProcess:
    """One sweep, four jobs: {crashing ONNX, demo} x {builder.timeout_s 0.1 s, 600 s}. Only
    the demo at 600 s can finish; the other three must fail alone."""
    tmp = tmp_path_factory.mktemp("builder")
    crash = crashing_onnx(tmp / "crash.onnx")
    sweep = run_sweep(["-m", f"model.onnx_path={crash},{DEMO_ONNX}",
                       "builder.timeout_s=0.1,600", *FAST], tmp)
    assert sweep.proc.returncode == ExitCode.SOME_JOBS_FAILED, sweep.stderr[-3000:]
    return sweep


def _job(sweep: SweepProcess, onnx_name: str, timeout: str) -> Run:
    (found,) = [r for r in sweep.jobs() if r.data.params["model.onnx_path"].endswith(onnx_name)
                and r.data.params["builder.timeout_s"] == timeout]
    return found


def _failed_with_log(sweep: SweepProcess, run: Run) -> str:
    assert run.info.status == "FAILED"
    logs = [p for name, p in sweep.artifacts(run).items()
            if name.startswith("engine/") and name.endswith(".log")]
    assert logs, f"no build log among {sorted(sweep.artifacts(run))}"
    assert "FAILED:" in logs[0].read_text()
    assert "error.txt" in sweep.artifacts(run)
    return run.data.tags["error"]


@pytest.mark.fault("builder crash", "FAILED run with the builder's log; the sweep goes on")
def test_builder_crash(builder_sweep: SweepProcess, row: Row) -> None:
    error = _failed_with_log(builder_sweep, _job(builder_sweep, "crash.onnx", "600.0"))
    assert "emulate build of" in error and "NoSuchOp" in error, error
    good = _job(builder_sweep, "demo_monolithic.onnx", "600.0")
    assert good.info.status == "FINISHED"
    assert _job(builder_sweep, "crash.onnx", "0.1").info.status == "FAILED"
    assert "is not a registered function/op" in error, error
    row.outcome("FAILED + engine/*.log: 'emulate build of crash.onnx with fp32-o3 failed: "
                "Fail: [ONNXRuntimeError] ... trt_sweep.fault:NoSuchOp(-1) is not a registered "
                "function/op. See ...'; the next job FINISHED")
    row.cleanup(assert_clean(builder_sweep))


@pytest.mark.fault("builder timeout (builder.timeout_s)",
                   "FAILED run with the builder's log; the sweep goes on")
def test_builder_timeout(builder_sweep: SweepProcess, row: Row) -> None:
    error = _failed_with_log(builder_sweep, _job(builder_sweep, "demo_monolithic.onnx", "0.1"))
    assert "did not finish within builder.timeout_s=0.1 s" in error, error
    assert builder_sweep.parents()[0].info.status == "FINISHED"
    row.outcome("FAILED + engine/*.log: 'the build did not finish within "
                "builder.timeout_s=0.1 s'; the next job FINISHED")
    row.cleanup(assert_clean(builder_sweep))


# -- the ONNX -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepProcess:
    tmp = tmp_path_factory.mktemp("onnx")
    corrupt = tmp / "corrupt.onnx"
    corrupt.write_bytes(DEMO_ONNX.read_bytes()[:4096])  # a download cut short
    mismatch = DEMO / "demo_skip_preprocessor.onnx"  # the other contract's model
    sweep = run_sweep(["-m", f"model.onnx_path={tmp / 'missing.onnx'},{corrupt},{mismatch}",
                       *FAST], tmp)
    # The preflight callback checks every job's model before the first job.
    assert sweep.proc.returncode == ExitCode.REFUSED, sweep.stderr[-3000:]
    return sweep


@pytest.mark.parametrize(("case", "message"), [
    pytest.param("missing", "does not exist", id="missing"),
    pytest.param("corrupt", "cannot be read", id="corrupt"),
    pytest.param("mismatch", "does not match model interface 'demo_monolithic'",
                 id="mismatch"),
])
@pytest.mark.fault("ONNX missing / corrupt / not the interface's",
                   "refused before any job (exit 2), one line naming the file: no run, no "
                   "engine, no server")
def test_onnx_is_checked_before_building(onnx_sweep: SweepProcess, case: str, message: str,
                                         row: Row) -> None:
    name = {"missing": "missing.onnx", "corrupt": "corrupt.onnx",
            "mismatch": "demo_skip_preprocessor.onnx"}[case]
    (line,) = [r for r in onnx_sweep.stderr.splitlines()
               if r.startswith("trt-sweep: preflight: FAIL model") and f"/{name}" in r]
    assert message in line, line
    assert onnx_sweep.runs() == [], "refused before any run was opened"
    assert not [e for e in (onnx_sweep.cache.iterdir() if onnx_sweep.cache.exists() else ())
                if not e.name.startswith(".")]  # nothing was built ...
    assert not list(onnx_sweep.tmp.rglob("tritonserver.log"))  # ... and nothing served
    row.outcome(f"{case}: exit 2 before any job: '{message}'; no run, no engine, no server")
    row.cleanup(assert_clean(onnx_sweep))


# -- the disk -------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: the demo engine (24 MB) cannot fit."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a 1 MiB tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.fault("disk full in the engine cache",
                   "FAILED run naming the full disk; no partial cache entry")
def test_disk_full_in_the_engine_cache(tiny_disk: Path, tmp_path: Path, row: Row) -> None:
    sweep = run_sweep(["-m", "trt.precision=fp32", *FAST], tmp_path / "s", cache=tiny_disk)
    assert sweep.proc.returncode == ExitCode.ALL_JOBS_FAILED, sweep.stderr[-3000:]
    (run,) = sweep.jobs()
    error = run.data.tags["error"]
    assert run.info.status == "FAILED"
    assert "no space left on the disk under the engine cache" in error, error
    assert "Nothing partial was kept" in error
    left = sorted(p.name for p in tiny_disk.iterdir())
    assert left in ([], [".failed"]), left
    row.outcome("FAILED: 'no space left on the disk under the engine cache ... Nothing "
                "partial was kept'")
    row.cleanup(assert_clean(sweep) + f"; tmpfs holds {left or 'nothing'}")
