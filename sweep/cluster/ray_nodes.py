"""Ray nodes that share neither a process nor a working directory: ``ray start --block``
per node, each in its own session, folder and temp dir; the head on 127.0.0.1, worker
``n`` announcing 127.0.0.(n+1) (the whole 127/8 is loopback on Linux, so every node has an
address of its own, as separate hosts would)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sweep.cluster.state import ClusterError, Part
from sweep.infra.processes import group_alive, start_group

# The head schedules no job: the jobs run on the workers, as on a cluster whose head is
# a small machine that only dispatches.
_COMMON = ["--disable-usage-stats", "--block"]


def _ray() -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", "start"]


def start_head(runtime: Path, port: int, env: dict[str, str]) -> Part:
    folder = runtime / "head"
    folder.mkdir()
    log = folder / "ray.log"
    # `ray start` swaps --node-ip-address=127.0.0.1 for the host's outward address, and
    # the head's servers then listen there (or everywhere). Ray keeps the loopback address
    # only where it believes it cannot cluster, which this variable switches on (its name
    # notwithstanding, it means "multi-node allowed" on every platform). The head needs no
    # more: workers join it with the variable unset.
    env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    pgid = start_group([*_ray(), "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                        "--num-cpus=0", "--include-dashboard=false",
                        f"--temp-dir={folder / 'tmp'}", *_COMMON], log, cwd=folder, env=env)
    return Part("head", pgid, str(log), ip="127.0.0.1", workdir=str(folder))


def start_worker(runtime: Path, n: int, head: str, env: dict[str, str],
                 cpus: int = 1) -> Part:
    """Worker ``n`` (1, 2, ...): ``cpus`` jobs at once, and a resource named after it
    (``trt_sweep_worker<n>``) that a job can ask for to land there."""
    name = f"worker{n}"
    folder = runtime / name
    folder.mkdir()
    log = folder / "ray.log"
    ip = f"127.0.0.{n + 1}"
    pgid = start_group([*_ray(), f"--address={head}", f"--node-ip-address={ip}",
                        f"--num-cpus={cpus}",
                        f"--resources={json.dumps({f'trt_sweep_{name}': 1})}",
                        f"--temp-dir={folder / 'tmp'}", *_COMMON], log, cwd=folder, env=env)
    return Part(name, pgid, str(log), ip=ip, workdir=str(folder))


def wait_started(part: Part, timeout_s: float = 90.0) -> None:
    """``ray start --block`` prints that it blocks once the node's processes run and the
    node has registered with the head."""
    deadline = time.monotonic() + timeout_s
    log = Path(part.log)
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "will now block" in text:
            return
        if not group_alive(part.pgid):
            raise ClusterError(f"Ray node {part.name} exited while starting; its log: {log}\n"
                               + "\n".join(text.splitlines()[-15:]))
        time.sleep(0.3)
    raise ClusterError(f"Ray node {part.name} did not start within {timeout_s:.0f} s; "
                       f"its log: {log}")
