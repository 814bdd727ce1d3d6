"""The tracking store: a server that is down or never answers fails the sweep in seconds,
before any work; two sweeps share one store and cache; credentials in the tracking URI
never reach a log, an artifact or the terminal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from tests.faults.conftest import (
    Row,
    SweepProcess,
    assert_clean,
    partial_cache_entries,
    run_sweep,
    start_sweep,
)
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]
SECRET = "hunter2-TOPSECRET"


def _http_store(port: int, tmp: Path) -> list[str]:
    return [f"tracking.uri=http://sweeper:{SECRET}@127.0.0.1:{port}",
            f"tracking.artifact_root={tmp / 'artifacts'}"]


def _no_work_done(sweep: SweepProcess) -> None:
    assert "Launching" not in sweep.output, "jobs were launched"
    assert not sweep.cache.exists(), "something was built"
    assert not list(sweep.tmp.rglob("tritonserver.log")), "a server was started"


@pytest.mark.fault("tracking store down (http://user:pw@127.0.0.1:<closed port>)",
                   "a clear error within seconds, before any work; no credentials printed")
def test_tracking_store_down(tmp_path: Path, row: Row) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sweep = run_sweep(["-m", "trt.precision=fp32,bf16", *FAST, *_http_store(port, tmp_path)],
                      tmp_path, tracking=False, timeout=120)
    assert sweep.proc.returncode == 2, (sweep.proc.returncode, sweep.stderr[-3000:])
    assert f"the MLflow tracking server at 127.0.0.1:{port} (tracking.uri) does not answer " \
           "(Connection refused)" in sweep.stderr, sweep.stderr[-3000:]
    assert sweep.seconds < 60, sweep.seconds
    assert SECRET not in sweep.output
    _no_work_done(sweep)
    row.outcome(f"exit 2 in {sweep.seconds:.0f} s: 'the MLflow tracking server at "
                f"127.0.0.1:{port} (tracking.uri) does not answer (Connection refused)'; "
                "no job launched; password not printed")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("tracking store accepts but never answers",
                   "a clear error within seconds (bounded MLflow retries), before any work")
def test_tracking_store_never_answers(tmp_path: Path, row: Row) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # the kernel completes the handshake; nobody ever reads
        port = hole.getsockname()[1]
        sweep = run_sweep(["-m", "trt.precision=fp32", *FAST, *_http_store(port, tmp_path)],
                          tmp_path, tracking=False, timeout=180)
    assert sweep.proc.returncode == 2, (sweep.proc.returncode, sweep.stderr[-3000:])
    assert "the MLflow tracking store (tracking.uri) cannot be used" in sweep.stderr
    assert sweep.seconds < 60, sweep.seconds  # MLflow's defaults: ~15 minutes
    assert SECRET not in sweep.output
    _no_work_done(sweep)
    row.outcome(f"exit 2 in {sweep.seconds:.0f} s: 'the MLflow tracking store (tracking.uri) "
                "cannot be used: MlflowException ...'; no job launched")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("two sweeps at once on one store and one cache",
                   "both complete; store and cache consistent (SQLite locking)")
def test_two_sweeps_at_once(tmp_path: Path, row: Row) -> None:
    db, cache = tmp_path / "mlruns" / "mlflow.db", tmp_path / "cache"  # both fresh
    args = ["-m", "trt.precision=fp32,bf16", *FAST]
    first = start_sweep(args, tmp_path, db=db, cache=cache, name="a")
    second = start_sweep(args, tmp_path, db=db, cache=cache, name="b")
    for sweep in (first, second):
        sweep.wait(300)
        assert sweep.proc.returncode == 0, sweep.stderr[-3000:]
        for symptom in ("database is locked", "already exists", "duplicate column",
                        "Callback ParentRunCallback"):
            assert symptom not in sweep.output, (symptom, sweep.stderr[-3000:])
    runs = first.runs()
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(parents) == 2 and len(jobs) == 4, (len(parents), len(jobs))
    assert {r.info.status for r in runs} == {"FINISHED"}
    for parent in parents:
        mine = [j for j in jobs if j.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(j.data.params["trt.precision"] for j in mine) == ["bf16", "fp32"]
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 2 and partial_cache_entries(cache) == []
    # A job whose identical twin in the other sweep FINISHED first is adopted (resume):
    # no engine of its own, and no engine_cached tag.
    cached = sorted(j.data.tags.get("engine_cached", "resumed") for j in jobs)
    row.outcome(f"both exit 0; 2 parents + 4 jobs FINISHED, each parent with its own 2; "
                f"cache: 2 complete entries (engine_cached: {cached})")
    row.cleanup(assert_clean(first, second))


# -- credentials ------------------------------------------------------------------------------

@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[int]:
    """A real MLflow tracking server on loopback (``mlflow server``), its files apart from
    the sweep's."""
    home = tmp_path / "mlflow-server"
    home.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
         "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=home, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n"
                                f"{(home / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # uvicorn, the job runner, huey consumers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.fault("credentials in tracking.uri (http://user:pw@host, a real mlflow server)",
                   "the password appears in no log, artifact, saved config or terminal output")
def test_credentials_never_logged(tmp_path: Path, warm_cache: Path, mlflow_server: int,
                                  row: Row) -> None:
    work = tmp_path / "sweep"
    sweep = run_sweep(["-m", "trt.precision=fp32", *FAST, *_http_store(mlflow_server, work)],
                      work, cache=warm_cache, tracking=False)
    assert sweep.proc.returncode == 0, sweep.stderr[-3000:]
    client = MlflowClient(f"http://127.0.0.1:{mlflow_server}")
    runs = client.search_runs([experiment_id(client)])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]  # parent + job
    for run in runs:
        assert SECRET not in repr(run.data.params) + repr(run.data.tags)
    assert SECRET not in sweep.output
    assert "***@127.0.0.1" in sweep.output  # Hydra's launcher line, redacted
    files = [p for p in work.rglob("*") if p.is_file()]
    leaks = [str(p.relative_to(work)) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == [], leaks
    kinds = sorted({p.suffix or p.name for p in files})
    row.outcome(f"sweep FINISHED through the server; password in none of {len(files)} files "
                f"({', '.join(kinds)}), params, tags, stdout or stderr")
    row.cleanup(assert_clean(sweep))
