"""What several hosts cost: a 4-job sweep on a rehearsal cluster (``python -m
sweep.cluster``: PostgreSQL, an MLflow server with proxied artifacts, a Ray head and two
worker nodes on this machine) with one worker node against two, and the per-job cost of
the tracking server against SQLite.

* 1 vs 2 workers: the same sweep (fp32/fp16 x opt_level 0/3, demo_tiny) through
  ``hydra/launcher=ray_cluster``; "1 worker" asks every job for worker1's own resource, so
  the jobs queue on that node while worker2 idles. Wall time of the command, and the span
  from the first job's start to the last job's end.
* tracking server vs SQLite: the same 4 jobs with Hydra's basic launcher (one after the
  other, on this process's host), once into a SQLite store, once into the server; the
  per-job figure is the mean of each job run's duration (MLflow's start to end).

Both comparisons are measured in the same run, interleaved over ``--repeat`` rounds; the
machine's two cores are shared by every node, so "2 workers" shows what two hosts would
gain at best minus what sharing the cores costs.

Run: python -m bench.cluster [--repeat 1] [--no-write]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    OUT,
    ROOT,
    bench_parser,
    machine_line,
    median,
    save_json,
    table,
    write_section,
)
from sweep.tracking import tags as tag

JOBS = ["trt.precision=fp32,fp16", "trt.opt_level=0,3", "dataset=demo_tiny"]
_NOTE = ("The SQLite sweeps' wall time includes creating a fresh store (MLflow's schema "
         "migrations), which the server's database had at `up`: compare the per-job "
         "figures.")


def _sweep(args: list[str], env: dict[str, str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-m", "sweep", "-m", *JOBS, *args], cwd=ROOT,
                              env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the sweep exited {code}; see {log}")
    return wall


def _jobs(uri: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=100)
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in jobs), experiment
    return jobs


def _span_s(jobs: list[Any]) -> float:
    return (max(r.info.end_time for r in jobs) - min(r.info.start_time for r in jobs)) / 1000


def _per_job_s(jobs: list[Any]) -> float:
    return sum((r.info.end_time - r.info.start_time) / 1000 for r in jobs) / len(jobs)


def main() -> None:
    ap = bench_parser(__doc__, repeat=1)
    args = ap.parse_args()
    from sweep.cluster import cluster

    header = machine_line()
    print(header, flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=OUT if OUT.exists() else None))
    started = time.perf_counter()
    state = cluster.up(root, workers=2)
    up_s = time.perf_counter() - started
    print(f"cluster up in {up_s:.1f} s: {state.ray_address}, {state.tracking_uri}", flush=True)
    env = {**os.environ, **state.env()}
    rows: list[dict[str, Any]] = []
    try:
        for rnd in range(args.repeat):
            row: dict[str, Any] = {"round": rnd}
            for workers in (1, 2):
                name = f"r{rnd}-w{workers}"
                steer = ["+hydra.launcher.ray.remote.resources={trt_sweep_worker1:1}"] \
                    if workers == 1 else []
                wall = _sweep(["hydra/launcher=ray_cluster", f"tracking.uri={state.tracking_uri}",
                               "tracking.artifact_root=null", f"tracking.experiment={name}",
                               f"builder.cache_dir={state.shared}/engines-{name}",
                               f"hydra.sweep.dir={state.shared}/multirun/{name}", *steer],
                              env, root / f"{name}.log")
                jobs = _jobs(state.tracking_uri, name)
                nodes = sorted({r.data.tags.get("ray.node_ip", "?") for r in jobs})
                row[f"w{workers}_wall_s"], row[f"w{workers}_span_s"] = wall, _span_s(jobs)
                row[f"w{workers}_nodes"] = nodes
                print(f"round {rnd}, {workers} worker(s): {wall:.1f} s wall, jobs "
                      f"{_span_s(jobs):.1f} s, on {', '.join(nodes)}", flush=True)
            for store in ("sqlite", "server"):
                name = f"r{rnd}-{store}"
                db = root / name / "mlflow.db"
                uri = state.tracking_uri if store == "server" else f"sqlite:///{db}"
                tracking = [f"tracking.uri={uri}", f"tracking.experiment={name}",
                            "tracking.artifact_root=null" if store == "server" else
                            f"tracking.artifact_root={db.parent / 'artifacts'}"]
                wall = _sweep([*tracking, f"builder.cache_dir={root / 'engines-basic'}",
                               f"hydra.sweep.dir={root / 'multirun' / name}"], env,
                              root / f"{name}.log")
                jobs = _jobs(uri, name)
                row[f"{store}_wall_s"], row[f"{store}_job_s"] = wall, _per_job_s(jobs)
                print(f"round {rnd}, {store}: {wall:.1f} s wall, {_per_job_s(jobs):.2f} s "
                      "per job", flush=True)
            rows.append(row)
    finally:
        cluster.down(root)

    def med(key: str) -> float:
        return median([r[key] for r in rows])

    w1, w2 = med("w1_wall_s"), med("w2_wall_s")
    s1, s2 = med("w1_span_s"), med("w2_span_s")
    job_sqlite, job_server = med("sqlite_job_s"), med("server_job_s")
    save_json("cluster", {"up_s": up_s, "rounds": rows})
    text = "\n".join([
        "## Several hosts rehearsed: 1 vs 2 worker nodes, tracking server vs SQLite "
        "(bench/cluster.py)\n", header, "",
        f"A rehearsal cluster on this machine (`python -m sweep.cluster up`, {up_s:.0f} s): "
        "PostgreSQL, `mlflow server` with proxied artifacts, a Ray head and two worker "
        "nodes of one CPU each; 4 jobs (fp32/fp16 x opt_level 0/3, demo_tiny), medians of "
        f"{len(rows)} round(s).\n",
        table(["4-job sweep", "wall s", "jobs' span s", "nodes used"], [
            ["ray_cluster, 1 worker node", w1, s1, ", ".join(rows[0]["w1_nodes"])],
            ["ray_cluster, 2 worker nodes", w2, s2, ", ".join(rows[0]["w2_nodes"])],
            ["ratio 1 / 2 workers", w1 / w2, s1 / s2, ""]]), "",
        table(["basic launcher, 4 jobs", "wall s", "per job s"], [
            ["SQLite store", med("sqlite_wall_s"), job_sqlite],
            ["tracking server (PostgreSQL, proxied artifacts)", med("server_wall_s"),
             job_server],
            ["server - SQLite", med("server_wall_s") - med("sqlite_wall_s"),
             job_server - job_sqlite],
            ["ratio server / SQLite", med("server_wall_s") / med("sqlite_wall_s"),
             job_server / job_sqlite]]), "",
        _NOTE])
    print(text)
    if args.write:
        write_section("cluster", text)


if __name__ == "__main__":
    main()
