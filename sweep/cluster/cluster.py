"""Bring a rehearsal cluster up and down: PostgreSQL -> MLflow server -> Ray head ->
workers, stopped in the reverse order. Every part is a process group recorded in
``<root>/cluster.json`` the moment it starts, so ``down`` finds all of them even after an
``up`` that failed half way."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from pathlib import Path

from sweep.cluster import postgres, ray_nodes, tracking_server
from sweep.cluster.state import STATE_FILE, ClusterError, ClusterState, Part
from sweep.infra.ports import free_port
from sweep.infra.processes import group_alive, stop_group

# How each part stops cleanly: PostgreSQL's fast shutdown is SIGINT (SIGTERM waits for
# every client to leave); Ray's `ray start --block` takes many seconds over SIGTERM and
# keeps no state worth a clean stop in a rehearsal.
_STOP = {"postgres": (signal.SIGINT, 15.0), "tracking": (signal.SIGTERM, 10.0)}
_RAY_STOP = (signal.SIGTERM, 3.0)


def up(root: Path, workers: int = 2, shared: Path | None = None) -> ClusterState:
    """Start every part; on any failure, stop what was started and raise."""
    root = root.resolve()
    if (root / STATE_FILE).exists():
        raise ClusterError(f"a cluster is already recorded at {root}: `python -m sweep.cluster "
                           f"down --root {root}` first")
    if workers < 1:
        raise ClusterError(f"--workers {workers}: at least one worker node is needed")
    root.mkdir(parents=True, exist_ok=True)
    shared = (shared or root / "shared").resolve()
    for sub in ("engines", "multirun", "artifacts"):
        (shared / sub).mkdir(parents=True, exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="trt-sweep-cluster-"))
    # PostgreSQL runs as its own user: it must be able to reach its folders.
    runtime.chmod(0o755)
    pg_port, tracking_port, ray_port = free_port(), free_port(), free_port()
    # The head listens on 127.0.0.1 only (ray_nodes.start_head). Every other process reads
    # "127.0.0.1" in an address as "this host" and swaps in the host's outward address,
    # where nothing listens; the IPv4-mapped spelling of the same address is left as is.
    state = ClusterState(root=str(root), shared=str(shared), runtime=str(runtime),
                         ray_address=f"[::ffff:127.0.0.1]:{ray_port}",
                         ray_token=secrets.token_hex(16),
                         tracking_uri=f"http://127.0.0.1:{tracking_port}", postgres_uri="",
                         postgres_port=pg_port, tracking_port=tracking_port)
    state.save()
    try:
        _record(state, postgres.start(runtime, pg_port, runtime / "postgres.log"))
        state.postgres_uri = postgres.create_database(runtime, pg_port,
                                                      runtime / "postgres.log")
        _record(state, tracking_server.start(state.postgres_uri, shared / "artifacts",
                                             tracking_port, runtime / "tracking.log",
                                             runtime))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": state.ray_token}
        head = ray_nodes.start_head(runtime, ray_port, env)
        _record(state, head)
        tracking_server.wait_healthy(tracking_port, runtime / "tracking.log")
        ray_nodes.wait_started(head)
        nodes = [ray_nodes.start_worker(runtime, n, state.ray_address, env)
                 for n in range(1, workers + 1)]
        for node in nodes:
            _record(state, node)
        for node in nodes:
            ray_nodes.wait_started(node)
    except BaseException:
        down(root)
        raise
    return state


def _record(state: ClusterState, part: Part) -> None:
    state.parts.append(part)
    state.save()


def down(root: Path) -> list[str]:
    """Stop every part (workers first, PostgreSQL last), remove the node-local files and
    the state file; the shared folder (the results) stays. Returns the parts stopped."""
    state = ClusterState.load(root.resolve())
    stopped = []
    for part in reversed(state.parts):
        stop_part(part)
        stopped.append(part.name)
    shutil.rmtree(state.runtime, ignore_errors=True)
    (Path(state.root) / STATE_FILE).unlink(missing_ok=True)
    return stopped


def stop_part(part: Part) -> None:
    sig, grace = _STOP.get(part.name, _RAY_STOP)
    stop_group(part.pgid, sig, grace)
    if group_alive(part.pgid):
        raise ClusterError(f"{part.name} (process group {part.pgid}) is still running after "
                           "SIGKILL")


def kill_node(root: Path, name: str) -> Part:
    """SIGKILL a worker node's whole process group (its raylet, its object store, the job
    workers it runs): a host that dies, as far as the rest of the cluster can tell."""
    state = ClusterState.load(root.resolve())
    part = state.part(name)
    if not name.startswith("worker"):
        raise ClusterError(f"{name} is not a worker node (workers: "
                           f"{', '.join(w.name for w in state.workers)})")
    stop_group(part.pgid, signal.SIGKILL, 0.0)
    state.parts = [p for p in state.parts if p.name != name]
    state.save()
    return part


def add_worker(root: Path) -> Part:
    """Start one more worker node (the next free number): a host that joins the cluster,
    e.g. in place of one that died."""
    state = ClusterState.load(root.resolve())
    numbers = [int(p.name.removeprefix("worker")) for p in state.parts
               if p.name.startswith("worker")]
    # A dead worker's folder stays until `down`: a new node never reuses its number.
    n = max([*numbers, _dead_workers(state)], default=0) + 1
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": state.ray_token}
    node = ray_nodes.start_worker(Path(state.runtime), n, state.ray_address, env)
    _record(state, node)
    ray_nodes.wait_started(node)
    return node


def _dead_workers(state: ClusterState) -> int:
    folders = Path(state.runtime).glob("worker*")
    return max((int(f.name.removeprefix("worker")) for f in folders
                if f.name.removeprefix("worker").isdigit()), default=0)


def restart_tracking(root: Path, down_s: float = 0.0) -> None:
    """Stop the MLflow server, stay down ``down_s`` seconds, start it again on the same
    port and database: what a restarted tracking server looks like to running jobs."""
    import time

    state = ClusterState.load(root.resolve())
    stop_part(state.part("tracking"))
    time.sleep(down_s)
    runtime = Path(state.runtime)
    part = tracking_server.start(state.postgres_uri, Path(state.shared) / "artifacts",
                                 state.tracking_port, runtime / "tracking.log", runtime)
    state.parts = [part if p.name == "tracking" else p for p in state.parts]
    state.save()
    tracking_server.wait_healthy(state.tracking_port, runtime / "tracking.log")


def status(root: Path) -> list[tuple[Part, bool]]:
    state = ClusterState.load(root.resolve())
    return [(part, group_alive(part.pgid)) for part in state.parts]
