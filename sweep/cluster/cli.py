"""``python -m sweep.cluster {up,down,status,env,kill-node,add-worker,restart-tracking}
--root DIR``:
several hosts rehearsed on one machine (docs/scaling.md, "Rehearsing several hosts").

    python -m sweep.cluster up --root /tmp/trt-sweep-cluster --workers 2
    eval "$(python -m sweep.cluster env --root /tmp/trt-sweep-cluster)"
    python -m sweep.cluster down --root /tmp/trt-sweep-cluster

Exit codes: 0 done; 2 refused (``cluster: ...``: nothing recorded at --root, a part that
would not start); 130 interrupted (what was started is stopped).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from sweep import cli
from sweep.cluster import cluster
from sweep.cluster.state import ClusterState

COMMANDS = {"up": "start PostgreSQL, the MLflow server, a Ray head and workers",
            "down": "stop every part; the shared folder stays",
            "status": "each part, its address and whether it runs",
            "env": "the exports a sweep on the head needs (for eval)",
            "kill-node": "SIGKILL a worker node (a host that dies)",
            "add-worker": "start one more worker node (a host that joins)",
            "restart-tracking": "stop and start the MLflow server"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sweep.cluster",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--root", type=Path, required=True,
                         help="where the cluster's state file (and by default the shared "
                              "folder) lives")
        if name == "up":
            sub.add_argument("--workers", type=int, default=2)
            sub.add_argument("--shared", type=Path, default=None,
                             help="the mount every node sees (default ROOT/shared)")
        if name == "kill-node":
            sub.add_argument("node", help="worker1, worker2, ...")
        if name == "restart-tracking":
            sub.add_argument("--down-s", type=float, default=0.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def body() -> None:
        root: Path = args.root
        if args.command == "up":
            state = cluster.up(root, args.workers, args.shared)
            _print_status(state)
        elif args.command == "down":
            print("stopped: " + ", ".join(cluster.down(root)))
        elif args.command == "status":
            _print_status(ClusterState.load(root.resolve()))
        elif args.command == "env":
            for key, value in ClusterState.load(root.resolve()).env().items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "add-worker":
            part = cluster.add_worker(root)
            print(f"started {part.name} ({part.ip})")
        elif args.command == "kill-node":
            part = cluster.kill_node(root, args.node)
            print(f"killed {part.name} ({part.ip}, process group {part.pgid})")
        else:
            cluster.restart_tracking(root, args.down_s)
            print("tracking server restarted")

    return cli.guard(body, "cluster", interrupted="interrupted")


def _print_status(state: ClusterState) -> None:
    alive = dict((p.name, ok) for p, ok in cluster.status(Path(state.root)))
    print(f"ray       {state.ray_address}\ntracking  {state.tracking_uri}\n"
          f"shared    {state.shared}")
    for part in state.parts:
        where = f" {part.ip}" if part.ip else ""
        print(f"  {part.name:<9}{where:<11} {'running' if alive[part.name] else 'DOWN'}"
              f"  (log {part.log})")
