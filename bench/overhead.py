"""Target 4: what a sweep job costs besides building and evaluating.

A. The real job: ``sweep.job.run`` (Hydra config read by ``JobSettings.from_cfg``, MLflow
   run, engine from the cache, render, start, ready, stream ONE utterance, stop, score,
   log), with the engine build, the streaming and the decoding timed from inside and
   subtracted. What remains is the per-job overhead a sweep pays: target <= 3 s local,
   <= 6 s docker.
B. The same job's stages on their own, served as the job serves (``serve``, the sweep's
   ServingOptions): render the repository; start until READY; stop; MLflow logging (run,
   params, tags, the artifacts a job logs, metrics, end).
Both for a server per job and for the kept server (``server.keep_running``: one
tritonserver per sweep in explicit model-control mode, each job's models reloaded into it),
locally and, when a Docker daemon and the image are there, in Docker.

Run: python -m bench.overhead [--repeat 5] [--no-docker]
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    OUT,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    median,
    onnx_path,
    save_json,
    table,
    verdict,
    write_section,
)
from sweep.server.base import ServerConfig
from sweep.tracking import tags as tag

WORK = OUT / "overhead"


# -- A. the real job -----------------------------------------------------------------------

def compose(overrides: list[str]) -> Any:
    """The job's config as ``python -m sweep`` composes it (the tools' one loader)."""
    from sweep.loader import ConfigOptions
    from sweep.loader import compose as load_config

    return load_config(ConfigOptions(overrides=tuple(overrides)), job_name="overhead")


def real_job(server: str, index: int, extra: list[str]) -> dict[str, float]:
    """One sweep.job.run; returns its wall time and the parts that are not overhead, as the
    job's own progress sink timed its phases."""
    import io

    from rich.console import Console

    import sweep.job as sweep_job
    from sweep.config import JobSettings
    from sweep.events import Events

    store = WORK / "mlruns"
    cfg = compose([
        f"model.onnx_path={onnx_path()}", "dataset=demo_tiny", "dataset.limit=1",
        f"server={server}", f"tracking.uri=sqlite:///{store}/mlflow.db",
        f"tracking.artifact_root={store}/artifacts",
        f"builder.cache_dir={OUT / 'engines-job'}", "+force=true", *extra])
    events = Events(console=Console(file=io.StringIO()), live=False)
    t0 = time.perf_counter()  # reading the config is part of a job's overhead
    result = sweep_job.run(JobSettings.from_cfg(cfg), WORK / f"job-{server}-{index}",
                           events=events)
    wall = time.perf_counter() - t0
    if result.status != "FINISHED":
        raise SystemExit(f"the {server} job failed: {result.error}")
    build = sum(v for k, v in events.seconds.items() if k.startswith("build"))
    stream = sum(v for k, v in events.seconds.items()
                 if k.startswith(("streaming", "repeat")))
    decode = result.metrics.get("decode_seconds", 0.0)
    return {"wall": wall, "build": build, "stream": stream, "decode": decode,
            "overhead": wall - build - stream - decode,
            "startup": result.metrics.get("startup_seconds", float("nan")),
            "stop": result.metrics.get("stop_seconds", float("nan")),
            "logging_end": result.metrics.get("logging_seconds", float("nan"))}


# -- B. stages -----------------------------------------------------------------------------

def mlflow_logging(engine: Any, repo: Any, log_path: Path) -> float:
    """What job.run logs to MLflow, with the engine file (tracking.log_engine defaults on)."""
    from sweep.tracking.runs import environment_tags, job_run
    from sweep.tracking.store import open_store

    t0 = time.perf_counter()
    store = open_store(f"sqlite:///{WORK}/mlruns-stage/mlflow.db", "bench-overhead",
                             str(WORK / "mlruns-stage" / "artifacts"), WORK)
    with job_run(store, "stage", None, {**environment_tags(),
                                               tag.KIND: "job"}) as run:
        run.params({f"p{i}": i for i in range(60)})
        run.tags({"engine_hash": "x", "engine_cached": "true"})
        run.metrics({"build_seconds": 0.0})
        for artifact in (engine.log_path, *engine.artifacts):
            run.artifact(artifact, "engine")
        run.artifact(engine.path, "engine")
        for config in repo.configs:
            run.artifact(config, f"model_repository/{config.parent.name}")
        run.artifact(log_path, "logs")
        transcripts = WORK / "transcripts.csv"
        transcripts.write_text("id,duration,reference,hypothesis\n" + "u,1.0,a,a\n" * 200)
        run.artifact(transcripts)
        run.metrics({f"m{i}": float(i) for i in range(20)})
    return time.perf_counter() - t0


def stages(model: Any, engine: Any, server: ServerConfig, name: str) -> dict[str, float]:
    """Render, start+ready (or swap), stop: ``serve`` as the job calls it, with the job's
    serving settings (ServingOptions) and its server (``make_server``); then MLflow."""
    from sweep.server import make_server
    from sweep.server.base import ServingOptions
    from sweep.server.serve import serve

    launcher = make_server(server)
    marks: list[float] = []
    t0 = time.perf_counter()
    with serve(model, engine, launcher, WORK / f"stage-{name}", ServingOptions(),
               rendered=lambda _: marks.append(time.perf_counter())) as served:
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    t1 = marks[0]
    logging = mlflow_logging(engine, served.repository, served.log_path)
    return {"render": t1 - t0, "start_ready": t2 - t1, "stop": t3 - t2, "mlflow": logging,
            "total": t3 - t0 + logging}


def docker_usable(image: str) -> str | None:
    """None when the docker path can run here, else why not."""
    try:
        from sweep.server.docker import DockerServer
    except ImportError as exc:
        return f"sweep/server/docker.py cannot be imported ({exc})"
    try:
        import docker

        client = docker.from_env()  # type: ignore[attr-defined]
        client.ping()
        client.images.get(image)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    del DockerServer
    return None


def repeat(n: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    runs = [fn() for _ in range(n)]
    return {k: median([r[k] for r in runs]) for k in runs[0]} | {"n": float(n)}


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = bench_parser(__doc__, repeat=5)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--image", default="trt-sweep-cpu:latest")
    args = ap.parse_args()

    from sweep.server import close_kept

    header = machine_line()
    print(header, flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    model = demo_model()
    engine = fp32_engine(model)
    results: dict[str, Any] = {}
    fresh = ["server.keep_running=false"]
    kept = ["server.keep_running=true"]

    def jobs(server: str, modes: dict[str, list[str]]) -> None:
        """A: the modes' jobs interleaved; the first job of each mode (engine cache, imports,
        and for a kept server its start) is timed apart as the sweep's one-time cost."""
        for name, extra in modes.items():
            results[f"first_{name}"] = real_job(server, 0, extra)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in modes}
        for i in range(args.repeat):
            for name, extra in modes.items():
                runs[name].append(real_job(server, i + 1, extra))
        for name, values in runs.items():
            results[f"job_{name}"] = {k: median([r[k] for r in values]) for k in values[0]}
            print(f"A {name}:", {k: round(v, 3) for k, v in results[f"job_{name}"].items()},
                  flush=True)
        results[f"close_{server}"] = timed(close_kept)

    jobs("local", {"local_kept": kept, "local_fresh": fresh})

    # B: the stages alone.
    local, local_kept = ServerConfig("local"), ServerConfig("local", keep_running=True)
    results["stages_local_fresh"] = repeat(args.repeat, lambda: stages(
        model, engine, local, "local"))
    stages(model, engine, local_kept, "local-kept")  # starts it
    results["stages_local_kept"] = repeat(args.repeat, lambda: stages(
        model, engine, local_kept, "local-kept"))
    results["close_local_stages"] = timed(close_kept)

    docker_note = "not measured (--no-docker)"
    if not args.no_docker:
        why = docker_usable(args.image)
        if why:
            docker_note = f"not measured: {why}"
        else:
            image = [f"server.image={args.image}"]
            jobs("docker", {"docker_fresh": image + fresh, "docker_kept": image + kept})
            docker = ServerConfig("docker", image=args.image)
            docker_kept = ServerConfig("docker", image=args.image, keep_running=True)
            results["stages_docker_fresh"] = repeat(args.repeat, lambda: stages(
                model, engine, docker, "docker"))
            stages(model, engine, docker_kept, "docker-kept")
            results["stages_docker_kept"] = repeat(args.repeat, lambda: stages(
                model, engine, docker_kept, "docker-kept"))
            close_kept()
            docker_note = f"image {args.image}"
    save_json("overhead", results)

    targets = {"local": 3.0, "docker": 6.0}
    names = {"local_kept": "local, kept server (shipped default)",
             "local_fresh": "local, server per job (server.keep_running=false)",
             "docker_fresh": "docker, container per job (shipped default)",
             "docker_kept": "docker, kept container (server.keep_running=true)"}
    rows = []
    for key, name in names.items():
        if f"job_{key}" not in results:
            continue
        r, first = results[f"job_{key}"], results[f"first_{key}"]
        limit = targets[key.split("_")[0]]
        once = f"{first['overhead']:.2f} s + {results['close_' + key.split('_')[0]]:.2f} s" \
            if key.endswith("kept") else ""
        rows.append([name, r["wall"], r["build"], r["stream"], r["overhead"], r["startup"],
                     r["stop"], once, f"<= {limit:g} s", verdict(r["overhead"] <= limit)])
    stage_rows = []
    for key, name in (("stages_local_fresh", "local, server per job"),
                      ("stages_local_kept", "local, kept server (swap)"),
                      ("stages_docker_fresh", "docker, container per job"),
                      ("stages_docker_kept", "docker, kept container (swap)")):
        if key in results:
            r = results[key]
            stage_rows.append([name, r["render"], r["start_ready"], r["stop"], r["mlflow"],
                               r["total"]])
    md = ["## Sweep overhead per job (bench/overhead.py)\n", header, "",
          f"A: the real `sweep.job.run` on one utterance of demo_tiny with a cached engine, "
          f"medians of {args.repeat} jobs per mode, the modes interleaved job by job; "
          "overhead = wall - engine build (cache lookup) - streaming - decoding, i.e. "
          "config, MLflow, render, start or swap, ready, stop, scoring and logging. A kept "
          "server's one-time cost (the sweep's first job, which starts it, and the stop "
          "when the sweep ends) is in its own column. Seconds.\n",
          table(["mode", "job wall", "build", "stream", "overhead", "startup (or swap)",
                 "stop", "once per sweep: first job + close", "target", "verdict"], rows),
          "", f"Docker: {docker_note}.", "",
          "B: the stages alone (seconds; for a kept server, \"start+ready\" is the swap "
          "of the job's models into it):", "",
          table(["server", "render", "start+ready", "stop", "MLflow logging", "sum"],
                stage_rows)]
    text = "\n".join(md)
    print(text)
    if args.write:
        write_section("overhead", text)


if __name__ == "__main__":
    main()
