"""Run a Python builder (``emulate``, ``tensorrt``) inside an image instead of on the host.

The image decides the environment the engine is built in: the same onnx/onnxruntime (or
TensorRT) versions as the server that will run it, whatever the host has installed. The
host side (``ContainerBuilder``) starts ``python -m sweep.builder.container`` in a fresh
container with the ONNX's folder read-only at /onnx and the workdir at /work; the
container side builds with the named builder and writes the Engine as JSON next to it.
Errors cross back as the same exception types (FlagSetError stays a config error).

Needs an image with this project's ``sweep`` package importable (docker/build_image.py's
CPU image has it); NVIDIA's stock images do not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sweep.engine import Engine
from sweep.errors import BuildError, ConfigError, FlagSetError, ModelError, SweepError
from sweep.flags import FlagSet
from sweep.infra.files import tail

if TYPE_CHECKING:
    from sweep.infra.containers import GpuSpec

# The container side needs only onnx/onnxruntime; docker-py is imported on the host side.

_ERRORS: dict[str, type[SweepError]] = {
    "FlagSetError": FlagSetError, "ConfigError": ConfigError, "ModelError": ModelError,
    "BuildError": BuildError,
}
RESULT = "engine.json"
ERROR = "error.json"


def engine_to_json(engine: Engine) -> dict[str, Any]:
    return {
        "path": str(engine.path), "format": engine.format, "flags": engine.flags.as_dict(),
        "builder": engine.builder, "builder_version": engine.builder_version,
        "build_seconds": engine.build_seconds, "log_path": str(engine.log_path),
        "runtime": engine.runtime, "metrics": engine.metrics,
        "artifacts": [str(a) for a in engine.artifacts], "cached": engine.cached,
    }


def engine_from_json(data: Mapping[str, Any], remap: tuple[str, Path] | None = None
                     ) -> Engine:
    """Rebuild an Engine; ``remap`` = (container prefix, host folder) for its paths."""

    def path(p: str) -> Path:
        if remap is not None:
            prefix, host = remap
            pp = PurePosixPath(p)
            if pp.is_relative_to(prefix):
                return host / pp.relative_to(prefix)
        return Path(p)

    return Engine(
        path=path(data["path"]), format=data["format"],
        flags=FlagSet.from_mapping(data["flags"]), builder=data["builder"],
        builder_version=data["builder_version"], build_seconds=float(data["build_seconds"]),
        log_path=path(data["log_path"]), runtime=dict(data.get("runtime") or {}),
        metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
        artifacts=tuple(path(a) for a in data.get("artifacts") or ()),
        cached=bool(data.get("cached", False)))


class ContainerBuilder:
    """A Builder that runs another builder (by name) inside ``image``."""

    def __init__(self, builder: str = "emulate", image: str = "trt-sweep-cpu:latest",
                 options: Mapping[str, Any] | None = None, gpus: GpuSpec = None,
                 timeout_s: float = 1800.0, docker_base_url: str | None = None,
                 job: str | None = None) -> None:
        self.name = builder
        self.image = image
        self.options = dict(options or {})
        self.gpus = gpus
        self.timeout_s = float(timeout_s)
        self.docker_base_url = docker_base_url
        self.job = job
        self._version: str | None = None

    def _run(self, request: Mapping[str, Any], workdir: Path, onnx_dir: Path | None,
             log_name: str) -> Path:
        from sweep.infra import containers

        client = containers.connect(self.docker_base_url)
        containers.require_image(client, self.image, BuildError)
        volumes = {str(workdir): {"bind": "/work", "mode": "rw"}}
        if onnx_dir is not None:
            volumes[str(onnx_dir)] = {"bind": "/onnx", "mode": "ro"}
        for stale in (RESULT, ERROR):
            (workdir / stale).unlink(missing_ok=True)
        log_path = workdir / log_name
        user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
        result = containers.run_to_completion(
            client, self.image, ["python", "-m", "sweep.builder.container", json.dumps(request)],
            log_path=log_path, timeout_s=self.timeout_s, error=BuildError,
            kind=f"build-{self.name}", job=self.job, volumes=volumes, working_dir="/work",
            user=user,            device_requests=containers.gpu_requests(self.gpus),
            environment={"HOME": "/tmp"})
        if result.timed_out:
            raise BuildError(f"the {self.name} build in {self.image!r} did not finish within "
                             f"{self.timeout_s:.0f} s; the container was removed. Last lines "
                             f"of {log_path}:\n{tail(log_path)}", log_path)
        error = workdir / ERROR
        if error.exists():
            data = json.loads(error.read_text())
            kind = _ERRORS.get(data.get("type", ""), BuildError)
            message = f"{data.get('message')} (in container {self.image})"
            if kind is BuildError:
                raise BuildError(message, log_path)
            raise kind(message)
        if result.exit_code != 0 or not (workdir / RESULT).exists():
            raise BuildError(
                f"the {self.name} build in {self.image!r} exited with code {result.exit_code} "
                f"without a result; is this project's sweep package installed in the image "
                f"(docker/build_image.py)? Last lines of {log_path}:\n{tail(log_path)}",
                log_path)
        return workdir / RESULT

    def version(self) -> str:
        if self._version is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="trt-sweep-version-") as tmp:
                out = self._run({"action": "version", "builder": self.name,
                                 "options": self.options}, Path(tmp), None, "version.log")
                inner = json.loads(out.read_text())["version"]
            from sweep.infra import containers

            image = containers.require_image(containers.connect(self.docker_base_url),
                                             self.image, BuildError)
            self._version = f"{inner} in {self.image}@{image.id.split(':')[-1][:12]}"
        return self._version

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        onnx_path = Path(onnx_path).resolve()
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        out = self._run({"action": "build", "builder": self.name, "options": self.options,
                         "onnx": f"/onnx/{onnx_path.name}", "flags": flags.as_dict(),
                         "workdir": "/work"}, workdir, onnx_path.parent, "container.log")
        engine = engine_from_json(json.loads(out.read_text()), remap=("/work", workdir))
        return Engine(**{**engine.__dict__, "builder_version": self.version()})


def _container_main(argv: list[str]) -> int:
    """The side that runs inside the image."""
    parser = argparse.ArgumentParser(prog="python -m sweep.builder.container")
    parser.add_argument("request", help="JSON: action, builder, options, onnx, flags, workdir")
    request = json.loads(parser.parse_args(argv).request)
    workdir = Path(request.get("workdir") or "/work")
    from sweep.builder import make_builder

    try:
        builder = make_builder(request["builder"], **(request.get("options") or {}))
        if request["action"] == "version":
            (workdir / RESULT).write_text(json.dumps({"version": builder.version()}))
            return 0
        flags = FlagSet.from_mapping(request["flags"])
        engine = builder.build(Path(request["onnx"]), flags, workdir)
        (workdir / RESULT).write_text(json.dumps(engine_to_json(engine), indent=2))
        return 0
    except SweepError as exc:
        (workdir / ERROR).write_text(json.dumps({"type": type(exc).__name__,
                                                 "message": str(exc)}))
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(_container_main(sys.argv[1:]))
