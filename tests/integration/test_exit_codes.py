"""python -m sweep's exit code says how the jobs ended (sweep/cli.py), and its last line
says how many failed: a script need not parse the table."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from sweep.cli import ExitCode
from tests.support.paths import ROOT
from tests.support.processes import our_processes
from tests.support.sweep import run_sweep

pytestmark = pytest.mark.integration

SMALL = ["dataset=demo_tiny", "dataset.limit=2", "eval.streams=2"]
# A layer pattern that names no layer of the demo graph: the builder refuses the flag set
# when it reads the graph, inside the job (what the preflight sees before any job, an
# opt_level out of range, say, refuses the whole sweep with exit 2 instead).
NO_LAYER = "{NoSuchLayer:fp16}"
OBEY = "trt.precision_constraints=obey"


def _last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_every_job_failed(tmp_path):
    proc = run_sweep(["-m", "trt.opt_level=0,1", OBEY, f"+trt.layer_precisions={NO_LAYER}",
                      *SMALL], tmp_path)
    assert proc.returncode == ExitCode.ALL_JOBS_FAILED, proc.stderr[-3000:]
    assert _last_line(proc.stderr) == ("trt-sweep: 2 of 2 jobs FAILED (see the table above / "
                                       "their runs' error tag)")


def test_some_jobs_failed(tmp_path, demo_onnx):
    proc = run_sweep(["-m", OBEY, f"+trt.layer_precisions={{}},{NO_LAYER}", *SMALL], tmp_path)
    assert proc.returncode == ExitCode.SOME_JOBS_FAILED, proc.stderr[-3000:]
    assert _last_line(proc.stderr) == ("trt-sweep: 1 of 2 jobs FAILED (see the table above / "
                                       "their runs' error tag)")
    assert "FINISHED" in proc.stdout and "FAILED" in proc.stdout  # the table says which
    assert our_processes() == []


def test_a_single_run_that_failed(tmp_path):
    proc = run_sweep([OBEY, f"+trt.layer_precisions={NO_LAYER}", *SMALL], tmp_path)
    assert proc.returncode == ExitCode.ALL_JOBS_FAILED, proc.stderr[-3000:]
    assert _last_line(proc.stderr) == ("trt-sweep: the job FAILED (see the message above / its "
                                       "run's error tag)")


def test_a_single_run_refused_by_its_store(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = subprocess.run([sys.executable, "-m", "sweep", *SMALL,
                           f"tracking.uri=http://127.0.0.1:{port}",
                           f"tracking.artifact_root={tmp_path}/artifacts",
                           f"builder.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.REFUSED, proc.stderr[-3000:]
    assert _last_line(proc.stderr).startswith(
        f"trt-sweep: the MLflow tracking server at 127.0.0.1:{port} (tracking.uri) does not "
        "answer"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
