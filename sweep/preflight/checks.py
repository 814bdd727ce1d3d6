"""What a sweep needs of its host, checked before any job: one ``Check`` per part, each
saying what it found and, when it fails, the command that fixes it.

Only what the settings use is checked: the embedded default needs the tritonserver of the
nvidia-pytriton wheel; ``builder=trtexec`` and ``server=docker`` need a Docker daemon and
their images, and, where they ask for GPUs (``builder.gpus``, ``server.gpus``), the NVIDIA
container runtime, GPUs visible in a container and a driver the image accepts.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.builder.base import BuilderConfig
from sweep.errors import SweepError
from sweep.infra import containers
from sweep.server.base import ServerConfig

# An image that stands in for NVIDIA's on a machine without GPUs (the test images): its
# trtexec and tritonserver follow TensorRT's and Triton's rules but run plans on the CPU.
STANDIN_LABEL = "trt-sweep.gpu-standin"
_TOOLKIT = ("install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure "
            "--runtime=docker && sudo systemctl restart docker`")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.name}: {self.found}" + ("" if self.ok else f" -> {self.fix}")


def _wants_gpu(gpus: Any) -> bool:
    return bool(containers.gpu_requests(gpus))


def _version(env: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        if (m := re.match(r"\d+(\.\d+)*", env.get(key, ""))) is not None:
            return m.group(0)
    return None


def image_env(image: Any) -> dict[str, str]:
    items = (image.attrs.get("Config") or {}).get("Env") or []
    return dict(item.partition("=")[::2] for item in items)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def run_checks(builder: BuilderConfig, server: ServerConfig) -> list[Check]:
    """Every check these settings need, in the order a sweep would meet them."""
    return list(_checks(builder, server))


def _checks(builder: BuilderConfig, server: ServerConfig) -> Iterator[Check]:
    if server.name == "local" and not builder.dry_run:
        yield _local_tritonserver()
    images = []
    if builder.dry_run:  # nothing is built or served: planned only
        return
    if builder.name == "trtexec" or (builder.name == "emulate" and builder.in_container):
        images.append(("builder.image", builder.image, builder.gpus if builder.name ==
                       "trtexec" else None, builder.docker_base_url))
    if server.name == "docker":
        images.append(("server.image", server.image, server.gpus, server.docker_base_url))
    if not images:
        return
    base_url = images[0][3]
    try:
        client = containers.connect(base_url, timeout_s=20)
        info = client.info()
    except SweepError as exc:
        yield Check("docker daemon", False, str(exc).split(". ")[0],
                    "start it: `sudo systemctl start docker` (as root: `dockerd &`), or point "
                    "DOCKER_HOST / server.docker_base_url at a running daemon")
        return
    yield Check("docker daemon", True, f"Docker {info.get('ServerVersion', '?')}")
    gpu_wanted = [(what, image, gpus) for what, image, gpus, _ in images if _wants_gpu(gpus)]
    if gpu_wanted:
        runtimes = sorted((info.get("Runtimes") or {}).keys())
        yield Check("nvidia container runtime", "nvidia" in runtimes,
                    f"runtimes {runtimes}" + ("" if "nvidia" in runtimes else
                                              " (no 'nvidia')"), _TOOLKIT)
    trt_versions: dict[str, str | None] = {}
    labels: dict[str, dict[str, str]] = {}
    for what, image_name, gpus, _ in images:
        try:
            image = containers.require_image(client, image_name, SweepError)
        except SweepError:
            yield Check(f"{what} {image_name}", False, "not present on this Docker host",
                        f"`docker pull {image_name}` (NGC images need `docker login "
                        "nvcr.io`); the sweep never pulls")
            continue
        env = image_env(image)
        labels[what] = (image.attrs.get("Config") or {}).get("Labels") or {}
        trt = _version(env, "TRT_VERSION", "TENSORRT_VERSION")
        triton = _version(env, "NVIDIA_TRITON_SERVER_VERSION", "TRITON_SERVER_VERSION")
        trt_versions[what] = trt
        yield Check(f"{what} {image_name}", True,
                    f"present; TensorRT {trt or 'unknown'}, Triton {triton or 'unknown'}")
        if _wants_gpu(gpus):
            yield from _gpu_checks(client, what, image_name, gpus, env)
    if builder.name == "trtexec" and server.name == "docker" and not _wants_gpu(server.gpus):
        standin = STANDIN_LABEL in labels.get("server.image", {})
        yield Check("GPUs for the TensorRT plans", standin,
                    "stand-in image: its server runs plans on the CPU" if standin else
                    "server.gpus is null, but builder=trtexec makes TensorRT plans and "
                    "Triton's TensorRT backend runs them on GPUs only",
                    "server.gpus=all (or the ids, e.g. server.gpus=0)")
    known = {v for v in trt_versions.values() if v}
    if builder.name == "trtexec" and server.name == "docker" and len(known) > 1:
        yield Check("one TensorRT for build and serve", False,
                    f"builder.image has TensorRT {trt_versions.get('builder.image')}, "
                    f"server.image {trt_versions.get('server.image')}",
                    "use the same tritonserver release for builder.image and server.image: "
                    "a plan runs only on the TensorRT that built it")


def _gpu_checks(client: Any, what: str, image: str, gpus: Any,
                env: dict[str, str]) -> Iterator[Check]:
    with tempfile.TemporaryDirectory(prefix="trt-sweep-preflight-") as tmp:
        log = Path(tmp) / "nvidia-smi.log"
        try:
            result = containers.run_to_completion(
                client, image, ["nvidia-smi", "--query-gpu=name,driver_version",
                                "--format=csv,noheader"],
                log_path=log, timeout_s=60, error=SweepError, kind="preflight",
                device_requests=containers.gpu_requests(gpus))
            text = log.read_text(errors="replace") if log.exists() else ""
        except SweepError as exc:
            yield Check(f"GPUs in a {what} container", False, str(exc), _TOOLKIT)
            return
    rows = [line.split(",") for line in text.splitlines() if line.count(",") == 1]
    if result.exit_code != 0 or not rows:
        yield Check(f"GPUs in a {what} container", False,
                    f"nvidia-smi exited {result.exit_code}: {text.strip()[-200:]}",
                    "check `docker run --rm --gpus all IMAGE nvidia-smi` and the driver")
        return
    yield Check(f"GPUs in a {what} container", True,
                ", ".join(sorted({r[0].strip() for r in rows})))
    driver = rows[0][1].strip()
    needed = env.get("CUDA_DRIVER_VERSION", "")
    if not needed:
        yield Check(f"driver for {image}", True, f"{driver} (the image names no minimum)")
        return
    ok = _numbers(driver) >= _numbers(needed)
    yield Check(f"driver for {image}", ok, f"{driver}, the image wants {needed} or later",
                f"upgrade the NVIDIA driver to {needed.split('.')[0]} or later, or use an "
                "older tritonserver release (its release notes name its driver)")


def _local_tritonserver() -> Check:
    from sweep.server.local import backend_directory

    try:
        with tempfile.TemporaryDirectory(prefix="trt-sweep-preflight-") as tmp:
            backend_directory(Path(tmp))
    except SweepError as exc:
        return Check("local tritonserver", False, str(exc).split(". ")[0],
                     "bash scripts/setup.sh (installs nvidia-pytriton and the system "
                     "libpython), or use server=docker")
    return Check("local tritonserver", True, "nvidia-pytriton's tritonserver and python "
                 "backend stub for this interpreter")
