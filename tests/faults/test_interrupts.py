"""Ctrl-C and SIGTERM in the middle of an evaluation: the running job ends KILLED, the
sweep's parent run is closed, and its tritonserver (process or container) is gone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import (
    Row,
    SweepProcess,
    assert_clean,
    mid_evaluation,
    run_sweep,
    served_requests,
    start_sweep,
    wait_until,
)
from tests.support.processes import our_processes

pytestmark = pytest.mark.integration

# Two jobs on one cached engine, each long enough (24 utterances) to be caught mid-way.
ARGS = ["-m", "eval.streams=2,3", "dataset=demo_test", "dataset.limit=24"]


def _interrupted(sweep: SweepProcess, sent: str) -> str:
    sweep.wait(120)
    assert sweep.proc.returncode == 130, (sweep.proc.returncode, sweep.stderr[-3000:])
    assert "interrupted; the running job was marked KILLED" in sweep.stderr
    jobs, parents = sweep.jobs(), sweep.parents()
    assert [r.info.status for r in jobs] == ["KILLED"], [r.info.status for r in jobs]
    assert jobs[0].data.tags["error"] == "interrupted (SIGINT/SIGTERM)"
    assert [r.info.status for r in parents] == ["KILLED"]
    return (f"{sent} -> exit 130 in {sweep.seconds:.0f} s; job 0 KILLED, job 1 never "
            "started, parent run KILLED (summary logged)")


@pytest.mark.fault("SIGINT (Ctrl-C) mid-sweep", "current run KILLED, parent closed, server gone")
def test_sigint_mid_sweep(tmp_path: Path, warm_cache: Path, row: Row) -> None:
    sweep = start_sweep(ARGS, tmp_path, cache=warm_cache)
    mid_evaluation(sweep)
    os.killpg(sweep.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    row.outcome(_interrupted(sweep, "SIGINT to the process group"))
    row.cleanup(assert_clean(sweep))


@pytest.mark.parametrize("started", ["from a terminal", "as a background job"])
@pytest.mark.fault("SIGTERM mid-sweep", "current run KILLED, parent closed, server gone")
def test_sigterm_mid_sweep(tmp_path: Path, warm_cache: Path, started: str, row: Row) -> None:
    # A script's background job inherits SIGINT ignored: SIGTERM must not rely on it.
    sweep = start_sweep(ARGS, tmp_path, cache=warm_cache,
                        ignore_sigint=started == "as a background job")
    mid_evaluation(sweep)
    os.kill(sweep.pid, signal.SIGTERM)  # what a scheduler or `kill` does: the sweep only
    row.outcome(_interrupted(sweep, "SIGTERM to the sweep"))
    row.cleanup(assert_clean(sweep))


# -- the same with Triton in a container ------------------------------------------------------

def _container_of(client: Any, sweep: SweepProcess) -> Any:
    found = client.containers.list(filters={"label": f"trt-sweep.host-pid={sweep.pid}",
                                            "status": "running"})
    return found[0] if found else None


def _security(container: Any) -> str:
    """What a sweep's Triton container may touch: the model repository, read-only, and
    nothing else; no privileges; ports on loopback only."""
    attrs = container.attrs
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert not host.get("CapAdd")
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    mounts = [(m["Destination"], m["RW"]) for m in attrs["Mounts"]]
    assert mounts == [("/models", False)], mounts
    assert not host.get("Devices")
    if host["NetworkMode"] != "host":
        ips = {b["HostIp"] for v in (host.get("PortBindings") or {}).values() for b in v}
        assert ips == {"127.0.0.1"}, ips
        where = "ports published on 127.0.0.1 only"
    else:
        where = "host network, Triton bound to 127.0.0.1"
        assert any(a == "--grpc-address=127.0.0.1" for a in attrs["Config"]["Cmd"])
    assert attrs["Config"]["Cmd"][0] == "tritonserver"  # an argument list, no shell
    return f"not privileged, no-new-privileges, only /models mounted (read-only), {where}"


@pytest.mark.docker
@pytest.mark.fault("SIGTERM mid-sweep, server=docker",
                   "current run KILLED, parent closed, container removed")
def test_sigterm_mid_sweep_in_docker(tmp_path: Path, warm_cache: Path, cpu_image: str,
                                     docker_client: Any, row: Row) -> None:
    sweep = start_sweep([*ARGS, "server=docker", f"server.image={cpu_image}"],
                        tmp_path, cache=warm_cache)
    container = wait_until(lambda: _container_of(docker_client, sweep), 180,
                           "the Triton container", sweep)
    security = _security(container)
    host = container.attrs["HostConfig"]
    if host["NetworkMode"] == "host":
        port = next(a.split("=", 1)[1] for a in container.attrs["Config"]["Cmd"]
                    if a.startswith("--grpc-port="))
    else:
        port = host["PortBindings"]["8001/tcp"][0]["HostPort"]
    wait_until(lambda: served_requests(f"127.0.0.1:{port}") > 0, 120,
               "the evaluation to start", sweep)
    os.kill(sweep.pid, signal.SIGTERM)
    outcome = _interrupted(sweep, "SIGTERM to the sweep")
    deadline = time.monotonic() + 5
    while docker_client.containers.list(all=True, filters={"id": container.id}) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    row.outcome(f"{outcome}; while it ran, the container was: {security}")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("sweep SIGKILLed mid-evaluation (kill -9, the OOM killer)",
                   "its tritonserver and stubs die with it; the next sweep on the store ends "
                   "its orphaned runs KILLED")
def test_sigkill_takes_the_server_along(tmp_path: Path, warm_cache: Path, row: Row) -> None:
    sweep = start_sweep(ARGS, tmp_path, cache=warm_cache)
    triton = mid_evaluation(sweep)
    killed_at = time.monotonic()
    os.kill(sweep.pid, signal.SIGKILL)  # nothing of the sweep runs after this
    sweep.wait(60)
    wait_until(lambda: not _alive(triton.pid), 10, "the tritonserver to die")
    gone_s = time.monotonic() - killed_at
    deadline = time.monotonic() + 15
    while our_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = our_processes()
    assert left == [], left
    orphans = [r.info.run_id for r in sweep.runs() if r.info.status == "RUNNING"]
    assert len(orphans) == 2, orphans  # the parent and job 0: nobody was left to close them

    again = run_sweep(["-m", "eval.streams=1", "dataset=demo_tiny", "dataset.limit=1"],
                      tmp_path, cache=warm_cache, name="again")
    assert again.proc.returncode == 0, again.stderr[-3000:]
    assert "2 run(s) left RUNNING by a sweep process that no longer exists" in again.stderr
    closed = {r.info.run_id: r for r in again.runs() if r.info.run_id in orphans}
    assert {r.info.status for r in closed.values()} == {"KILLED"}
    assert all(f"pid {sweep.pid}" in r.data.tags["error"] for r in closed.values())
    row.outcome(f"SIGKILL -> tritonserver gone {gone_s:.1f} s later (the detached "
                "watchdog), its stubs with it; the 2 runs left RUNNING end KILLED when the "
                "next sweep opens the store ('... pid N ... ended without closing it')")
    row.cleanup(assert_clean(sweep, again))


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
