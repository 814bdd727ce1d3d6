"""``python -m sweep.serve RUN_ID``: a finished job's repository, reassembled from what the
run logged, served on the ports asked for; one streamed utterance gives the run's own
transcript; Ctrl-C stops it cleanly (exit 0, no process left)."""

from __future__ import annotations

import csv
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from sweep.data.manifest import load_manifest
from sweep.doctor.cli import load_model
from sweep.evaluate.decode import GreedyDecoder
from sweep.evaluate.stream import GrpcStreamer
from sweep.infra.ports import free_port
from sweep.tracking import tags as tag
from tests.support.paths import DEMO, ROOT
from tests.support.processes import default_sigint, our_processes
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration


def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line, or a failure with what the tool said."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line:
                return line
        if proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"sweep.serve printed no endpoint (exit {proc.returncode}): {err[-2000:]}")


@pytest.mark.parametrize("state", ["client", "server"])
def test_serve_a_finished_run_then_ctrl_c(state: str, tmp_path: Path) -> None:
    done = run_sweep(["dataset=demo_tiny", "dataset.limit=2", f"server.state={state}"],
                     tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([experiment_id(client, "trt-sweep")],
                                filter_string=f"tags.`{tag.KIND}` = 'job'")
    transcripts = Path(client.download_artifacts(run.info.run_id, "transcripts.csv",
                                                 str(tmp_path / "dl")))
    expected = {r["id"]: r["hypothesis"] for r in csv.DictReader(transcripts.open())}

    grpc_port, http_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep.serve", run.info.run_id, "--tracking-uri", uri,
         "--grpc-port", str(grpc_port), "--http-port", str(http_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=default_sigint)
    try:
        line = _line(proc, timeout=120)
        assert f"127.0.0.1:{grpc_port}" in line and "'model'" in line
        model = load_model("demo_monolithic")
        utterance = load_manifest(DEMO / "data" / "demo_tiny")[0]
        served = GrpcStreamer(model, f"127.0.0.1:{grpc_port}", "model", streams=1,
                              transport="grpc", state=state).run([utterance])
        assert GreedyDecoder().decode(served.results[0].logprobs) == expected[utterance.id]
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "stopped" in err
    assert our_processes() == []


def test_serve_refuses_a_run_that_is_not_in_the_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweep.serve", "0" * 32, "--tracking-uri",
         f"sqlite:///{tmp_path / 'mlflow.db'}"], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 2
    assert "is not in the store" in done.stderr
