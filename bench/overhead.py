"""Target 4: what a sweep job costs besides building and evaluating.

A. The real job: ``sweep.job.run`` (Hydra config, MLflow run, engine from the cache,
   render, start, ready, stream ONE utterance, stop, score, log), with the engine build,
   the streaming and the decoding timed from inside and subtracted. What remains is the
   per-job overhead a sweep pays: target <= 3 s local, <= 6 s docker.
B. The same job's stages on their own: render the repository; start until READY; stop;
   MLflow logging (run, params, tags, the artifacts a job logs, metrics, end).
C. Local server, restart per job (stop, render, start, ready) against one server started
   with --model-control-mode=explicit that loads each job's repository over gRPC
   (render, load, ready, unload).
D. Docker (sweep/deploy/docker.py), when a daemon and the image are there: a fresh
   container per job, and the kept container whose models are swapped.

Run: python bench/overhead.py [--repeat 5] [--no-docker]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    ROOT,
    ServerSetup,
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

WORK = OUT / "overhead"


# -- A. the real job -----------------------------------------------------------------------

def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sweep.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def real_job(server: str, index: int, extra: list[str]) -> dict[str, float]:
    """One sweep.job.run; returns its wall time and the parts that are not overhead."""
    import sweep.job as job

    timed: dict[str, float] = {"build": 0.0, "stream": 0.0}
    build_engine = job.build_engine
    streamer_cls = job.GrpcStreamer

    def timed_build(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return build_engine(*a, **k)
        finally:
            timed["build"] += time.perf_counter() - t

    class TimedStreamer(streamer_cls):  # type: ignore[misc,valid-type]
        def run(self, *a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return super().run(*a, **k)
            finally:
                timed["stream"] += time.perf_counter() - t

    store = WORK / "mlruns"
    cfg = compose([
        f"model.onnx_path={onnx_path()}", "dataset=demo_tiny", "dataset.limit=1",
        f"server={server}", f"tracking.uri=sqlite:///{store}/mlflow.db",
        f"tracking.artifact_root={store}/artifacts",
        f"builder.cache_dir={OUT / 'engines-job'}", *extra])
    job.build_engine, job.GrpcStreamer = timed_build, TimedStreamer  # type: ignore[misc]
    try:
        t0 = time.perf_counter()
        result = job.run(cfg, WORK / f"job-{server}-{index}")
        wall = time.perf_counter() - t0
    finally:
        job.build_engine, job.GrpcStreamer = build_engine, streamer_cls  # type: ignore[misc]
    if result.status != "FINISHED":
        raise SystemExit(f"the {server} job failed: {result.error}")
    decode = result.metrics.get("decode_seconds", 0.0)
    return {"wall": wall, "build": timed["build"], "stream": timed["stream"], "decode": decode,
            "overhead": wall - timed["build"] - timed["stream"] - decode,
            "startup": result.metrics.get("startup_seconds", float("nan")),
            "stop": result.metrics.get("stop_seconds", float("nan")),
            "logging_end": result.metrics.get("logging_seconds", float("nan"))}


# -- B. stages -----------------------------------------------------------------------------

def mlflow_logging(engine: Any, repo: Any, log_path: Path) -> float:
    """What job.run logs to MLflow, with the engine file (tracking.log_engine defaults on)."""
    from sweep import track

    t0 = time.perf_counter()
    store = track.open_store(f"sqlite:///{WORK}/mlruns-stage/mlflow.db", "bench-overhead",
                             str(WORK / "mlruns-stage" / "artifacts"), WORK)
    with track.job_run(store, "stage", None, {**track.environment_tags(),
                                               "trt-sweep.kind": "job"}) as run:
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


def stages(model: Any, engine: Any, server: Any, name: str) -> dict[str, float]:
    from sweep.deploy.repository import ServingOptions, render

    setup = ServerSetup()
    t0 = time.perf_counter()
    repo = render(model, engine, WORK / f"stage-{name}" / "model_repository",
                  site_packages=server.site_packages(),
                  options=ServingOptions(max_batch_size=setup.max_batch_size,
                                         queue_delay_us=setup.queue_delay_us,
                                         instances=setup.instances))
    t1 = time.perf_counter()
    log_path = WORK / f"stage-{name}" / "tritonserver.log"
    ctx = server.serving(repo, log_path)
    ctx.__enter__()
    t2 = time.perf_counter()
    ctx.__exit__(None, None, None)
    t3 = time.perf_counter()
    logging = mlflow_logging(engine, repo, log_path)
    return {"render": t1 - t0, "start_ready": t2 - t1, "stop": t3 - t2, "mlflow": logging,
            "total": t3 - t0 + logging}


# -- C. server lifecycles -----------------------------------------------------------------

NO_AUTOCOMPLETE = "--disable-auto-complete-config"


class TunedLocal:
    """LocalServer variants the bench measures before anyone changes sweep/deploy/local.py.

    ``extra``: more tritonserver flags. ``--disable-auto-complete-config``: the python
    backend otherwise starts one throw-away stub per model (it imports model.py to ask it
    for a config that config.pbtxt already gives in full) before the real one, about 1.5 s
    per model load here. ``fast_stop``: after SIGTERM, wait until the python backend has
    released its stubs' shared memory (the models are unloaded, nothing is left to clean
    up) and SIGKILL then, instead of waiting for Triton's exit loop, which polls in 1 s
    steps.
    """

    def __init__(self, extra: tuple[str, ...] = (), fast_stop: bool = False) -> None:
        from sweep.deploy.local import LocalServer

        self.base = LocalServer()
        self.extra = extra
        self.fast_stop = fast_stop
        self.name = "local"

    def site_packages(self) -> str:
        return self.base.site_packages()

    def serving(self, repository: Any, log_path: Path) -> Any:
        from contextlib import contextmanager

        from sweep.deploy.base import LABEL, Endpoint
        from sweep.deploy.health import wait_ready
        from sweep.deploy.local import _pytriton_root, stop_process

        @contextmanager
        def ctx() -> Any:
            grpc_port, http_port = self.base._ports()
            env = dict(os.environ)
            libs = _pytriton_root().parent / "nvidia_pytriton.libs"
            env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(libs),
                                                            env.get("LD_LIBRARY_PATH")]))
            env[LABEL.upper().replace("-", "_")] = "1"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [*self.base.command(repository.path, grpc_port, http_port), *self.extra],
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                started = wait_ready(f"127.0.0.1:{grpc_port}", repository.entry_model,
                                     timeout_s=60, log_path=log_path,
                                     alive=lambda: proc.poll() is None)
                yield Endpoint(grpc_url=f"127.0.0.1:{grpc_port}",
                               http_url=f"127.0.0.1:{http_port}",
                               model_name=repository.entry_model, log_path=log_path,
                               startup_seconds=started, server="local")
            finally:
                if self.fast_stop:
                    fast_stop(proc, str(repository.path))
                stop_process(proc)

        return ctx()


def fast_stop(proc: subprocess.Popen[bytes], marker: str, grace_s: float = 10.0) -> None:
    import signal

    from bench.common import server_pids

    regions = []
    for pid in server_pids(marker)["stub"]:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        regions += [Path("/dev/shm") / a.decode() for a in args
                    if a.startswith(b"triton_python_backend_shm_region")]
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline and (
            not regions or any(r.exists() for r in regions)):
        time.sleep(0.02)
    if proc.poll() is None and regions:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ExplicitLocal:
    """One local tritonserver in --model-control-mode=explicit; jobs load and unload."""

    def __init__(self, repo_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        import tritonclient.grpc as grpcclient

        from sweep.deploy.base import LABEL
        from sweep.deploy.health import free_port
        from sweep.deploy.local import LocalServer, _pytriton_root

        self.repo_path = repo_path
        repo_path.mkdir(parents=True, exist_ok=True)
        server = LocalServer()
        grpc, http = free_port(), free_port()
        cmd = [*server.command(repo_path, grpc, http), "--model-control-mode=explicit",
               *extra_args]
        env = dict(os.environ)
        libs = _pytriton_root().parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
        env[LABEL.upper().replace("-", "_")] = "1"
        t0 = time.perf_counter()
        self.log = open(repo_path.parent / "explicit.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.url = f"127.0.0.1:{grpc}"
        self.client = grpcclient.InferenceServerClient(self.url)
        while True:
            try:
                if self.client.is_server_live() and self.client.is_server_ready():
                    break
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise SystemExit("explicit-mode tritonserver exited; see explicit.log")
            time.sleep(0.05)
        self.start_seconds = time.perf_counter() - t0

    def load(self, models: tuple[str, ...], entry: str) -> None:
        for m in models:
            self.client.load_model(m)
        while not self.client.is_model_ready(entry):
            time.sleep(0.02)

    def unload(self, models: tuple[str, ...]) -> None:
        for m in models:
            self.client.unload_model(m)
        while True:
            index = self.client.get_model_repository_index(as_json=True).get("models", [])
            if not any(x.get("state") in ("READY", "UNLOADING") for x in index):
                return
            time.sleep(0.02)

    def close(self) -> None:
        from sweep.deploy.local import stop_process

        self.client.close()
        stop_process(self.proc)
        self.log.close()


def explicit_cycle(model: Any, engine: Any, server: ExplicitLocal,
                   unload: bool = True) -> dict[str, float]:
    """One job's model swap. ``unload=False``: the next job's load replaces the model
    (Triton reloads it: the new one is loaded, then the old one let go)."""
    from sweep.deploy.repository import ServingOptions, render

    t0 = time.perf_counter()
    repo = render(model, engine, server.repo_path, site_packages=_site_packages(),
                  options=ServingOptions())
    t1 = time.perf_counter()
    server.load(repo.models, repo.entry_model)
    t2 = time.perf_counter()
    if unload:
        server.unload(repo.models)
    t3 = time.perf_counter()
    return {"render": t1 - t0, "up": t2 - t1, "down": t3 - t2, "total": t3 - t0}


def restart_cycle(model: Any, engine: Any, server: Any, name: str) -> dict[str, float]:
    from sweep.deploy.repository import ServingOptions, render

    t0 = time.perf_counter()
    repo = render(model, engine, WORK / name / "model_repository",
                  site_packages=server.site_packages(), options=ServingOptions())
    t1 = time.perf_counter()
    ctx = server.serving(repo, WORK / name / "tritonserver.log")
    ctx.__enter__()
    t2 = time.perf_counter()
    ctx.__exit__(None, None, None)
    t3 = time.perf_counter()
    return {"render": t1 - t0, "up": t2 - t1, "down": t3 - t2, "total": t3 - t0}


def _site_packages() -> str:
    from sweep.deploy.local import LocalServer

    return LocalServer().site_packages()


def docker_usable(image: str) -> str | None:
    """None when the docker path can run here, else why not."""
    try:
        from sweep.deploy.docker import DockerServer
    except ImportError as exc:
        return f"sweep/deploy/docker.py cannot be imported ({exc})"
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(image)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    del DockerServer
    return None


def repeat(n: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    runs = [fn() for _ in range(n)]
    return {k: median([r[k] for r in runs]) for k in runs[0]} | {"n": float(n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--image", default="trt-sweep-cpu:latest")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from sweep.deploy.local import LocalServer

    header = machine_line()
    print(header, flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    model = demo_model()
    engine = fp32_engine(model)
    results: dict[str, Any] = {}

    # A: warm the engine cache and imports first (a sweep's second job on), then measure.
    real_job("local", 0, [])
    results["job_local"] = repeat(args.repeat, lambda: real_job(
        "local", int(time.time() * 1000) % 10**9, []))
    print("A local job:", {k: round(v, 3) for k, v in results["job_local"].items()}, flush=True)

    # B and C: stages, restart vs explicit load (interleaved).
    results["stages_local"] = repeat(args.repeat, lambda: stages(model, engine, LocalServer(),
                                                                 "local"))
    print("B local stages:", {k: round(v, 3) for k, v in results["stages_local"].items()},
          flush=True)
    # C: lifecycles, interleaved job by job.
    from sweep.deploy.local import LocalServer as Shipped

    explicit = ExplicitLocal(WORK / "explicit" / "model_repository")
    explicit_fast = ExplicitLocal(WORK / "explicit-fast" / "model_repository",
                                  (NO_AUTOCOMPLETE,))
    reload_fast = ExplicitLocal(WORK / "reload-fast" / "model_repository", (NO_AUTOCOMPLETE,))
    modes: dict[str, Callable[[], dict[str, float]]] = {
        "restart (as shipped)": lambda: restart_cycle(model, engine, Shipped(), "c-shipped"),
        f"restart, {NO_AUTOCOMPLETE}": lambda: restart_cycle(
            model, engine, TunedLocal((NO_AUTOCOMPLETE,)), "c-noauto"),
        f"restart, {NO_AUTOCOMPLETE}, fast stop": lambda: restart_cycle(
            model, engine, TunedLocal((NO_AUTOCOMPLETE,), fast_stop=True), "c-fast"),
        "explicit load + unload": lambda: explicit_cycle(model, engine, explicit),
        f"explicit load + unload, {NO_AUTOCOMPLETE}": lambda: explicit_cycle(
            model, engine, explicit_fast),
        f"explicit reload (no unload), {NO_AUTOCOMPLETE}": lambda: explicit_cycle(
            model, engine, reload_fast, unload=False),
    }
    cycles: dict[str, list[dict[str, float]]] = {k: [] for k in modes}
    try:
        for _ in range(args.repeat):
            for name, fn in modes.items():
                cycles[name].append(fn())
    finally:
        for server in (explicit, explicit_fast, reload_fast):
            server.close()
    results["lifecycles"] = {k: {f: median([r[f] for r in v]) for f in v[0]}
                             for k, v in cycles.items()}
    results["explicit_start_once"] = explicit.start_seconds
    for k, v in results["lifecycles"].items():
        print(f"C {k}: " + ", ".join(f"{f} {x:.3f}" for f, x in v.items()), flush=True)

    docker_note = "not measured (--no-docker)"
    if not args.no_docker:
        why = docker_usable(args.image)
        if why:
            docker_note = f"not measured: {why}"
        else:
            from sweep.deploy.docker import DockerServer

            real_job("docker", 0, [f"server.image={args.image}"])
            results["job_docker"] = repeat(args.repeat, lambda: real_job(
                "docker", int(time.time() * 1000) % 10**9, [f"server.image={args.image}"]))
            results["stages_docker"] = repeat(args.repeat, lambda: stages(
                model, engine, DockerServer(image=args.image), "docker"))
            kept = DockerServer(image=args.image, keep_running=True)
            try:
                stages(model, engine, kept, "docker-kept")  # starts the kept container
                results["stages_docker_kept"] = repeat(args.repeat, lambda: stages(
                    model, engine, kept, "docker-kept"))
            finally:
                kept.close()
            docker_note = f"image {args.image}"
            print("D docker job:", results["job_docker"], flush=True)
    save_json("overhead", results)

    def job_row(name: str, key: str, limit: float) -> list[Any]:
        r = results[key]
        return [name, r["wall"], r["build"], r["stream"], r["decode"], r["overhead"],
                r["startup"], r["stop"], f"<= {limit:g} s", verdict(r["overhead"] <= limit)]

    rows = [job_row("local", "job_local", 3.0)]
    if "job_docker" in results:
        rows.append(job_row("docker (fresh container)", "job_docker", 6.0))
    stage_rows = []
    for key, name in (("stages_local", "local"), ("stages_docker", "docker fresh"),
                      ("stages_docker_kept", "docker kept (explicit swap)")):
        if key in results:
            r = results[key]
            stage_rows.append([name, r["render"], r["start_ready"], r["stop"], r["mlflow"],
                               r["total"]])
    life = results["lifecycles"]
    shipped = life["restart (as shipped)"]["total"]
    job_over = results["job_local"]["overhead"]
    life_rows = [[k, v["render"], v["up"], v["down"], v["total"], job_over - shipped + v["total"],
                  verdict(job_over - shipped + v["total"] <= 3.0)] for k, v in life.items()]
    md = ["## Sweep overhead per job (bench/overhead.py)\n", header, "",
          f"Medians of {args.repeat} jobs. A: the real `sweep.job.run` on one utterance of "
          "demo_tiny with a cached engine; overhead = wall - engine build (cache lookup) - "
          "streaming - decoding, i.e. config, MLflow, render, start, ready, stop, scoring "
          "and logging. Seconds.\n",
          table(["server", "job wall", "build", "stream", "decode", "overhead",
                 "startup (start+ready)", "stop", "target", "verdict"], rows), "",
          f"Docker: {docker_note}.", "",
          "B: the stages alone (seconds):", "",
          table(["server", "render", "start+ready", "stop", "MLflow logging", "sum"],
                stage_rows), "",
          "C: local server lifecycles per job (seconds; interleaved). \"up\": start until "
          "READY, or load until READY; \"down\": stop, or unload. The last columns put "
          "each lifecycle into the measured job (A's overhead with the shipped restart "
          "swapped for it) against the 3 s target:", "",
          table(["lifecycle", "render", "up", "down", "per job", "job overhead with it",
                 "<= 3 s"], life_rows), "",
          f"An explicit-mode server itself starts once in "
          f"{results['explicit_start_once']:.2f} s (no model loaded)."]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        write_section("overhead", text)


if __name__ == "__main__":
    main()
