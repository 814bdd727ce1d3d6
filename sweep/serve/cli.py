"""``python -m sweep.serve RUN_ID``: serve a finished job's engine as that job served it, on
fixed ports, for other tools (perf_analyzer, a real client, the doctor's --url), until
Ctrl-C or SIGTERM.

The repository is reassembled from what the run logged: its config.pbtxt files
(``model_repository/<model>/``: the scheduling, the state mode and the tensors the job
served with) and its engine (``engine/model.onnx`` or ``engine/model.plan``); the
python-backend sources come from this checkout. Re-rendering from the run's params instead
would serve what today's templates and conf/model files make of them, which need not be
what the run measured.

Examples::

    python -m sweep.serve 2ba47442295840fe9a7d94acaba4849e
    python -m sweep.serve RUN_ID --grpc-port 9001 --http-port 9000 \\
        --tracking-uri sqlite:///mlruns/mlflow.db
    # the store, server image and GPUs of your own config, as the sweep read them
    python -m sweep.serve RUN_ID --config-dir tone-conf tracking=mine server=docker

Exit status: 0 after a clean stop (Ctrl-C), 2 when the run cannot be served (not
finished, no engine logged, a port taken: the message says which).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sweep import cli, loader
from sweep.errors import ConfigError
from sweep.server.base import ServerConfig
from sweep.tracking.store import redact


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweep.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", help="a FINISHED job run of the sweep's store")
    p.add_argument("--tracking-uri",
                   help="the MLflow store (default: tracking.uri of the config, as the sweep "
                        "reads it)")
    p.add_argument("--grpc-port", type=int, default=8001, help="default: %(default)s")
    p.add_argument("--http-port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--server", choices=("local", "docker"), default=None,
                   help="shorthand for the override server=local|docker (default: the "
                        "config's server group, image and GPUs included)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the repository and tritonserver.log go (default: a "
                        "temporary folder, removed at the end)")
    p.add_argument("--ready-timeout", type=float, default=None,
                   help="seconds to wait for the server (default: server.ready_timeout_s)")
    loader.add_config_options(p)
    return p


@dataclass(frozen=True)
class Resolved:
    """What serve reads from the configuration (sweep/loader.py) and its own flags."""

    tracking_uri: str
    server: ServerConfig


def resolve(args: argparse.Namespace) -> Resolved:
    """The store and the server, from the configuration the sweep ran with; an explicit
    flag wins."""
    options = loader.ConfigOptions.from_args(args)
    if args.server:
        options = options.with_overrides(f"server={args.server}")
    settings = loader.load(options, "serve")
    server = replace(settings.server, grpc_port=args.grpc_port, http_port=args.http_port,
                     keep_running=False,
                     ready_timeout_s=args.ready_timeout or settings.server.ready_timeout_s)
    return Resolved(loader.tracking_uri(settings.tracking, args.tracking_uri), server)


def fetch_run(uri: str, run_id: str, dest: Path) -> tuple[dict[str, Path], Path, Any]:
    """The run's logged configs {model folder: config.pbtxt}, its engine file, the run. A
    job resumed from an identical run (tag resumed_from) is served from that run's
    artifacts, as promote installs it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from sweep.tracking.records import from_run
    from sweep.tracking.store import check_tracking_server

    check_tracking_server(uri)  # a server that is down: seconds, not MLflow's 4 minutes
    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"run {run_id!r} is not in the store {redact(uri)} "
                          f"({redact(exc.message)}); pass --tracking-uri for another "
                          "store.") from exc
    if run.info.status != "FINISHED":
        raise ConfigError(f"run {run_id} is {run.info.status}; only a FINISHED job run "
                          "served an engine that can be served again.")
    record = from_run(client, run)
    if record.dry_run:
        raise ConfigError(f"run {run_id} is a dry run (builder.dry_run=true): it planned an "
                          "engine and built none. Run the job on a GPU host to serve it.")
    source = record.artifact_run
    via = f" (the run it was resumed from, {source})" if source != run_id else ""
    folders = [a.path for a in client.list_artifacts(source, "model_repository") if a.is_dir]
    configs: dict[str, Path] = {}
    for folder in folders:
        local = Path(client.download_artifacts(source, f"{folder}/config.pbtxt",
                                               str(dest / "logged")))
        configs[Path(folder).name] = local
    if record.engine_artifact is None:
        raise ConfigError(f"run {source}{via} logged no engine (engine/model.onnx or "
                          "engine/model.plan); it ran with tracking.log_engine=false. Run the "
                          "job again with tracking.log_engine=true.")
    engine = Path(client.download_artifacts(source, record.engine_artifact,
                                            str(dest / "logged")))
    return configs, engine, run


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)

    def log(message: str) -> None:
        print(f"serve: {message}", file=sys.stderr, flush=True)

    def body() -> int:
        from sweep.server import make_server
        from sweep.server.repository import reassemble

        resolved = resolve(args)
        with tempfile.TemporaryDirectory(prefix="trt-sweep-serve-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            configs, engine, run = fetch_run(resolved.tracking_uri, args.run_id, workdir)
            server = make_server(resolved.server)
            repository = reassemble(configs, engine, workdir / "model_repository",
                                    site_packages=server.site_packages())
            with server.serving(repository, workdir / "tritonserver.log") as endpoint:
                # One line a script can wait for and parse.
                print(f"serving run {args.run_id} ({run.info.run_name}): model "
                      f"{endpoint.model_name!r}, grpc {endpoint.grpc_url}, http "
                      f"{endpoint.http_url}", flush=True)
                log("Ctrl-C stops the server")
                # A stop asked for: the block stops the server.
                with contextlib.suppress(KeyboardInterrupt):
                    threading.Event().wait()
            log("stopped")
        return 0

    return cli.guard(body, "serve")
