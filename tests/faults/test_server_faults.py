"""Faults of the serving side: Triton killed or frozen in the middle of an evaluation, an
engine Triton cannot load, a port that is taken, a Docker daemon that does not answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from mlflow.entities import Run

from sweep.cli import ExitCode
from tests.faults.conftest import (
    Row,
    SweepProcess,
    assert_clean,
    mid_evaluation,
    run_sweep,
    start_sweep,
)

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]
REQUEST_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory: pytest.TempPathFactory, warm_cache: Path
                 ) -> tuple[SweepProcess, dict[str, float]]:
    """Three jobs on one cached engine: the first job's server is SIGKILLed mid-evaluation,
    the second's frozen (SIGSTOP), the third is left alone."""
    tmp = tmp_path_factory.mktemp("killed")
    sweep = start_sweep(["-m", "eval.streams=2,3,4", "dataset=demo_test", "dataset.limit=24",
                         f"eval.request_timeout_s={REQUEST_TIMEOUT_S}"], tmp, cache=warm_cache)
    first = mid_evaluation(sweep)
    os.kill(first.pid, signal.SIGKILL)
    second = mid_evaluation(sweep, not_pid={first.pid})
    os.kill(second.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    third = mid_evaluation(sweep, not_pid={first.pid, second.pid})
    seen = {"frozen_to_next_server_s": time.monotonic() - frozen_at,
            "pids": float(len({first.pid, second.pid, third.pid}))}
    sweep.wait(300)
    assert sweep.proc.returncode == ExitCode.SOME_JOBS_FAILED, sweep.stderr[-3000:]
    return sweep, seen


def _by_streams(sweep: SweepProcess, streams: str) -> Run:
    (found,) = [r for r in sweep.jobs() if r.data.params["eval.streams"] == streams]
    return found


@pytest.mark.fault("tritonserver SIGKILLed mid-evaluation",
                   "that run FAILED with the reason; the next job gets a fresh server")
def test_server_killed_mid_evaluation(killed_sweep: tuple[SweepProcess, dict[str, float]],
                                      row: Row) -> None:
    sweep, seen = killed_sweep
    run = _by_streams(sweep, "2")
    error = run.data.tags["error"]
    assert run.info.status == "FAILED"
    assert "tritonserver was killed by signal SIGKILL during the evaluation" in error, error
    assert "logs/tritonserver.log" in sweep.artifacts(run)
    last = _by_streams(sweep, "4")
    assert last.info.status == "FINISHED"
    assert seen["pids"] == 3  # a fresh server per job
    row.outcome("FAILED: 'tritonserver was killed by signal SIGKILL during the evaluation "
                "(inference ... failed ...)'; job 3 FINISHED on its own fresh server")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("tritonserver frozen (SIGSTOP) mid-evaluation",
                   "no hang: the request deadline (eval.request_timeout_s) fails the run")
def test_server_frozen_mid_evaluation(killed_sweep: tuple[SweepProcess, dict[str, float]],
                                      row: Row) -> None:
    sweep, seen = killed_sweep
    run = _by_streams(sweep, "3")
    error = run.data.tags["error"]
    assert run.info.status == "FAILED"
    assert "Deadline Exceeded" in error, error
    # The deadline, the stop (SIGTERM + SIGCONT, 10 s grace at most) and the next start.
    assert seen["frozen_to_next_server_s"] < REQUEST_TIMEOUT_S + 10 + 30, seen
    row.outcome(f"FAILED: 'inference ... failed ...: Deadline Exceeded' "
                f"(eval.request_timeout_s={REQUEST_TIMEOUT_S}); next server up "
                f"{seen['frozen_to_next_server_s']:.0f} s after the freeze")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("an engine Triton cannot load (corrupt cache entry)",
                   "FAILED with Triton's own error line")
def test_engine_triton_cannot_load(tmp_path: Path, warm_cache: Path, row: Row) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    # The fp32 entry this row's sweep will use (rows that build fp16 add theirs to the cache).
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")
                and json.loads((p / "engine.json").read_text())["flags"]["precision"] == "fp32"]
    engine = entry / "model.onnx"
    engine.write_bytes(engine.read_bytes()[:2048])  # bit rot on the cache's disk
    sweep = run_sweep(["-m", "trt.precision=fp32", *FAST], tmp_path / "s", cache=cache)
    assert sweep.proc.returncode == ExitCode.ALL_JOBS_FAILED, sweep.stderr[-3000:]
    (run,) = sweep.jobs()
    error = run.data.tags["error"]
    assert run.info.status == "FAILED"
    # The sweep's one server (server.keep_running) answers the load with Triton's reason.
    assert "loading model 'model' into the kept tritonserver failed" in error, error
    assert "Triton says:" in error, error
    assert "failed to load 'model' version 1: Internal: InvalidProtobuf" in error, error
    row.outcome("FAILED: 'loading model 'model' into the kept tritonserver failed: ... "
                "Triton says: ... failed to load 'model' version 1: Internal: "
                "InvalidProtobuf ...'")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("server.grpc_port already in use", "a clear error naming the port")
def test_port_already_in_use(tmp_path: Path, warm_cache: Path, row: Row) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sweep = run_sweep(["-m", f"server.grpc_port={port}", *FAST], tmp_path, cache=warm_cache)
    assert sweep.proc.returncode == ExitCode.ALL_JOBS_FAILED, sweep.stderr[-3000:]
    (run,) = sweep.jobs()
    error = run.data.tags["error"]
    assert run.info.status == "FAILED"
    assert f"port {port} on 127.0.0.1 is already in use" in error, error
    assert not list(tmp_path.rglob("tritonserver.log")), "no server was started"
    row.outcome(f"FAILED before starting Triton: 'port {port} on 127.0.0.1 is already in "
                "use. Free it, or leave server.grpc_port/http_port unset ...'")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("Docker daemon stopped (server=docker)",
                   "the sweep refuses before any job, naming the daemon and the fix")
def test_docker_daemon_stopped(tmp_path: Path, row: Row) -> None:
    # A daemon that died leaves its socket file behind with nobody listening: bind it,
    # never listen, close. (The machine's real dockerd is shared with other work, so it
    # is not the one stopped.)
    sock_path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(sock_path))
    sweep = run_sweep(["-m", "server=docker", "server.image=trt-sweep-cpu:latest", *FAST],
                      tmp_path / "s", env={"DOCKER_HOST": f"unix://{sock_path}"})
    # The preflight checks run before the first job (and before the parent run).
    assert sweep.proc.returncode == ExitCode.REFUSED, sweep.stderr[-3000:]
    assert f"FAIL docker daemon: No Docker daemon answers at unix://{sock_path}" \
        in sweep.stderr, sweep.stderr[-3000:]
    assert "sudo systemctl start docker" in sweep.stderr
    assert sweep.runs() == [], "no job was started, so no run was opened"
    assert not sweep.cache.exists() or not [p for p in sweep.cache.iterdir()
                                            if not p.name.startswith(".")], "an engine was built"
    row.outcome("refused by the preflight before any job, exit 2: 'FAIL docker daemon: No "
                "Docker daemon answers at unix://... -> start it: `sudo systemctl start "
                "docker` ...'; no run, no engine")
    row.cleanup(assert_clean(sweep))
