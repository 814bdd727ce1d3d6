"""Several hosts, rehearsed on one machine with real parts: ``python -m sweep.cluster up``
starts PostgreSQL, an MLflow server on it with proxied artifacts, a Ray head and two
worker nodes (own loopback address, own working directory, own temp dir); the engine
cache and the sweep folders live on a folder every node sees. One cluster serves every
test of this module; the test that kills a worker node comes last.

Needs PostgreSQL (Debian: postgresql; `.ci/run` installs it) and the `cluster` extra
(psycopg2, for the server); skips with the reason otherwise."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweep.cluster import cluster, postgres
from sweep.cluster.state import STATE_FILE, ClusterError, ClusterState
from sweep.infra.processes import group_alive
from sweep.tracking import tags as tag
from tests.support.cluster import (
    cluster_env,
    cluster_sweep_command,
    start_cluster_sweep,
    sweep_runs,
    wait_for_running_job,
)
from tests.support.paths import ROOT
from tests.support.processes import our_processes

pytest.importorskip("ray", reason="the `ray` extra is not installed: pip install -e '.[ray]'")
pytest.importorskip("hydra_plugins.hydra_ray_launcher",
                    reason="the `ray` extra is not installed: pip install -e '.[ray]'")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

SMALL = ["dataset=demo_tiny"]
WORKERS = {"127.0.0.2", "127.0.0.3"}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    try:
        postgres.bin_dir()
    except ClusterError as exc:
        pytest.skip(str(exc))
    if importlib.util.find_spec("psycopg2") is None:
        pytest.skip("psycopg2 is missing (the MLflow server's PostgreSQL driver): "
                    "pip install -e '.[cluster]'")
    root = tmp_path_factory.mktemp("cluster")
    state = cluster.up(root, workers=2)
    try:
        yield state
    finally:
        parts = list(state.parts)
        cluster.down(root)
        # Nothing of any part is left: not a raylet, not a server, not PostgreSQL.
        assert [p.name for p in parts if group_alive(p.pgid)] == []
        assert not Path(state.runtime).exists()


def _figures(state: ClusterState, name: str, figures: dict[str, object]) -> None:
    """The figures of a rehearsal, printed and kept beside the sweep folders."""
    path = Path(state.shared) / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"\n{name}: {json.dumps(figures)}")


def test_a_relative_path_is_refused_before_any_job(rehearsal: ClusterState) -> None:
    command = cluster_sweep_command(rehearsal, "unused", [*SMALL, "trt.precision=fp32,fp16"],
                                    "cluster-refused")
    # A user's defaults: the sweep folder relative, the engine cache under ~.
    command = [a for a in command if not a.startswith(("hydra.sweep.dir=",
                                                        "builder.cache_dir="))]
    proc = subprocess.run(command, cwd=ROOT, env=cluster_env(rehearsal), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "hydra.sweep.dir=multirun/" in last and "builder.cache_dir=~/" in last, last
    assert "no job was started" in last
    assert MlflowClient(rehearsal.tracking_uri).get_experiment_by_name("cluster-refused") \
        is None


def test_postgres_takes_no_connection_without_its_password(rehearsal: ClusterState) -> None:
    """No trust auth: neither over TCP nor over the socket, nor as the ``postgres`` user, is
    a connection accepted without the password, which only its owner can read and which
    is written nowhere else (not in cluster.json, a log, or a command line)."""
    import psycopg2

    runtime = Path(rehearsal.runtime)
    secret_file = postgres.password_file(runtime)
    secret = secret_file.read_text().strip()
    where = {"tcp": "127.0.0.1", "socket": str(runtime / "pgsock")}
    for name, host in where.items():
        for password in (None, "wrong-" + secret):
            with pytest.raises(psycopg2.OperationalError,
                               match=r"no password supplied|password authentication failed"):
                psycopg2.connect(host=host, port=rehearsal.postgres_port, user=postgres.USER,
                                 dbname=postgres.DATABASE, password=password,
                                 connect_timeout=5).close()
        with psycopg2.connect(host=host, port=rehearsal.postgres_port, user=postgres.USER,
                              dbname=postgres.DATABASE, password=secret,
                              connect_timeout=5) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT current_setting('password_encryption')")
            assert cursor.fetchone() == ("scram-sha-256",), name
        conn.close()
    if os.geteuid() == 0:  # the postgres user itself, over the socket, as trust allowed
        as_postgres = subprocess.run(
            ["setpriv", f"--reuid={pwd.getpwnam('postgres').pw_uid}",
             f"--regid={pwd.getpwnam('postgres').pw_gid}", "--init-groups", "--",
             str(postgres.bin_dir() / "psql"), "-h", where["socket"],
             "-p", str(rehearsal.postgres_port), "-U", postgres.USER, "-w", "-c", "SELECT 1",
             postgres.DATABASE], capture_output=True, text=True, timeout=30)
        assert as_postgres.returncode != 0 and "no password supplied" in as_postgres.stderr
    state_file = Path(rehearsal.root) / STATE_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert secret_file.stat().st_uid == os.geteuid()
    written = [p for p in [state_file, *runtime.glob("*.log")] if secret in p.read_text()]
    assert written == []
    tracking = rehearsal.part("tracking").pgid
    assert secret not in Path(f"/proc/{tracking}/cmdline").read_text()
    assert "postgresql" not in Path(f"/proc/{tracking}/cmdline").read_text()


def test_the_ray_head_listens_on_loopback_only(rehearsal: ClusterState) -> None:
    """Every socket the head's processes listen on (GCS, raylet, agents, metrics) is bound
    to a loopback address; `ray start` alone put them on the host's outward address or on
    every interface."""
    import psutil

    head = rehearsal.part("head").pgid
    pids = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == head}
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 3, listening  # GCS and raylet at least
    exposed = [f"{c.laddr.ip}:{c.laddr.port}" for c in listening if not _loopback(c.laddr.ip)]
    assert exposed == [], exposed


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def test_four_jobs_land_on_both_workers_and_share_the_cache(rehearsal: ClusterState,
                                                            tmp_path: Path) -> None:
    # Jobs 0 and 1 (fp32) start together, one per worker, on the same cache key; so do
    # jobs 2 and 3 (fp16): every entry is built on one node and taken on the other.
    started = time.monotonic()
    proc = start_cluster_sweep(rehearsal, "four", [*SMALL, "trt.precision=fp32,fp16",
                                                   "eval.streams=1,2"], "cluster-sweep",
                               tmp_path / "sweep.log")
    assert proc.wait(timeout=400) == 0, (tmp_path / "sweep.log").read_text()[-4000:]
    wall_s = time.monotonic() - started
    parent, jobs = sweep_runs(rehearsal, "cluster-sweep")
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in [parent, *jobs]), \
        [(r.info.run_name, r.info.status, r.data.tags.get("error")) for r in jobs]
    assert {r.data.tags["ray.node_ip"] for r in jobs} == WORKERS

    by_key: dict[str, list[Any]] = {}
    for run in jobs:
        by_key.setdefault(run.data.tags["engine_hash"], []).append(run)
    assert len(by_key) == 2
    cross_node = []
    for runs in by_key.values():
        built = [r for r in runs if r.data.tags["engine_cached"] == "false"]
        taken = [r for r in runs if r.data.tags["engine_cached"] == "true"]
        assert len(built) == 1 and len(taken) == 1, by_key
        cross_node.append(built[0].data.tags["ray.node_ip"] != taken[0].data.tags["ray.node_ip"])
    assert any(cross_node), "no entry built on one node was taken on the other"
    entries = sorted(p.name for p in (Path(rehearsal.shared) / "engines").iterdir()
                     if not p.name.startswith("."))
    assert entries == sorted(by_key)

    # The parent run's table, CSV and Pareto plot, read back through the server: the
    # artifacts went through the server's proxy (mlflow-artifacts:), never a worker's disk.
    client = MlflowClient(rehearsal.tracking_uri)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= \
        {"sweep_results.csv", "pareto_wer_latency.png"}
    csv = Path(client.download_artifacts(parent.info.run_id, "sweep_results.csv",
                                         str(tmp_path))).read_text()
    assert len(csv.strip().splitlines()) == 5
    assert our_processes() == []
    _figures(rehearsal, "four_jobs", {
        "wall_s": round(wall_s, 1),
        "jobs": [{"job": r.data.params["job.num"], "flags": r.info.run_name,
                  "streams": r.data.params["eval.streams"],
                  "node": r.data.tags["ray.node_ip"], "cached": r.data.tags["engine_cached"],
                  "lost_race": r.data.metrics.get("cache_lost_race", 0.0)}
                 for r in sorted(jobs, key=lambda r: int(r.data.params["job.num"]))],
        "cache_entries": len(entries)})


def test_a_tracking_server_restart_mid_sweep_loses_nothing(rehearsal: ClusterState,
                                                           tmp_path: Path) -> None:
    log = tmp_path / "sweep.log"
    proc = start_cluster_sweep(rehearsal, "restart", [*SMALL, "trt.precision=fp32",
                                                      "trt.opt_level=0,1"],
                               "cluster-restart", log)
    caught = wait_for_running_job(rehearsal, "cluster-restart", proc, lambda run: True)
    started = time.monotonic()
    cluster.restart_tracking(Path(rehearsal.root), down_s=3.0)
    outage_s = time.monotonic() - started
    assert proc.wait(timeout=400) == 0, log.read_text()[-4000:]
    parent, jobs = sweep_runs(rehearsal, "cluster-restart")
    # The clients rode out the outage (MLflow's HTTP retries; a job starting meanwhile
    # waits for the server): every run ended, none is left RUNNING.
    assert len(jobs) == 2
    assert [r.info.status for r in [parent, *jobs]] == ["FINISHED"] * 3, \
        [(r.info.run_name, r.info.status, r.data.tags.get("error")) for r in jobs]
    assert "Retrying" in log.read_text()  # the outage was met, not missed
    assert our_processes() == []
    _figures(rehearsal, "tracking_restart", {
        "caught_run": caught.info.run_id, "outage_s": round(outage_s, 1),
        "statuses": [r.info.status for r in jobs]})


def test_a_worker_node_killed_mid_job(rehearsal: ClusterState, tmp_path: Path) -> None:
    log = tmp_path / "sweep.log"
    proc = start_cluster_sweep(rehearsal, "kill", [*SMALL, "trt.precision=fp32,fp16",
                                                   "trt.opt_level=0"], "cluster-kill", log)
    victim = wait_for_running_job(rehearsal, "cluster-kill", proc,
                                  lambda run: run.data.tags.get("ray.node_ip") == "127.0.0.2")
    cluster.kill_node(Path(rehearsal.root), "worker1")
    assert proc.wait(timeout=400) == 0, log.read_text()[-4000:]
    parent, jobs = sweep_runs(rehearsal, "cluster-kill")
    assert all(r.info.status != "RUNNING" for r in [parent, *jobs])
    dead = next(r for r in jobs if r.info.run_id == victim.info.run_id)
    # The killed attempt ends FAILED with the reason; Ray ran the job again on the node
    # that lives, and the sweep counted that run.
    assert dead.info.status == "FAILED"
    assert "died mid-job" in dead.data.tags["error"] and "127.0.0.2" in dead.data.tags["error"]
    retry_id = dead.data.tags[tag.RETRIED_BY]
    retry = next(r for r in jobs if r.info.run_id == retry_id)
    assert retry.info.status == "FINISHED" and retry.data.tags["ray.node_ip"] == "127.0.0.3"
    assert retry.data.params["job.num"] == dead.data.params["job.num"]
    assert sorted(r.info.status for r in jobs) == ["FAILED", "FINISHED", "FINISHED"]
    assert "1 job run(s) left RUNNING by a worker that died" in log.read_text()
    assert our_processes() == []
    _figures(rehearsal, "worker_killed", {
        "killed_run": dead.info.run_id, "error": dead.data.tags["error"],
        "retry": retry_id, "retry_node": retry.data.tags["ray.node_ip"]})


def test_a_job_lost_after_ray_s_retries_fails_alone(rehearsal: ClusterState,
                                                    tmp_path: Path) -> None:
    # A host joins in place of the dead one; with no retry left, its death loses the job.
    joined = cluster.add_worker(Path(rehearsal.root))
    log = tmp_path / "sweep.log"
    proc = start_cluster_sweep(rehearsal, "lost", [*SMALL, "trt.precision=fp32,fp16",
                                                   "trt.opt_level=0",
                                                   "hydra.launcher.ray.remote.max_retries=0"],
                               "cluster-lost", log)
    victim = wait_for_running_job(rehearsal, "cluster-lost", proc,
                                  lambda run: run.data.tags.get("ray.node_ip") == joined.ip)
    cluster.kill_node(Path(rehearsal.root), joined.name)
    # The sweep goes on and ends with "some jobs FAILED".
    assert proc.wait(timeout=400) == 3, log.read_text()[-4000:]
    parent, jobs = sweep_runs(rehearsal, "cluster-lost")
    assert parent.info.status == "FINISHED" and len(jobs) == 2
    dead = next(r for r in jobs if r.info.run_id == victim.info.run_id)
    other = next(r for r in jobs if r.info.run_id != victim.info.run_id)
    assert dead.info.status == "FAILED" and other.info.status == "FINISHED"
    assert "Ray gave the job up" in dead.data.tags["error"], dead.data.tags["error"]
    text = log.read_text()
    assert f"job #{dead.data.params['job.num']} was lost with its Ray worker" in text
    # Ray forwards the raylets' messages (a node marked dead) to the driver's stderr when
    # they come, which may be after the sweep's own last line.
    last = [line for line in text.splitlines() if line.startswith("trt-sweep: ")][-1]
    assert "1 of 2 jobs FAILED" in last, text[-2000:]
    assert our_processes() == []
    _figures(rehearsal, "job_lost", {"killed_run": dead.info.run_id,
                                     "node": joined.ip, "error": dead.data.tags["error"]})
