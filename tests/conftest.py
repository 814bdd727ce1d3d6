"""Shared fixtures. Integration fixtures start real servers once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker.client import DockerClient

from sweep.errors import DockerUnavailableError

# bench/client_calls.py imports the model builder from here.
from tests.support.models import tiny_monolithic_onnx
from tests.support.paths import ROOT

__all__ = ["tiny_monolithic_onnx"]


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return tiny_monolithic_onnx(tmp_path / "tiny.onnx")


# -- Docker: one daemon connection and one CPU image per session, for every test that needs them
# (the faults run before the integration tests, and a clean CI machine has no image yet).

@pytest.fixture(scope="session")
def docker_client() -> DockerClient:
    from sweep.infra import containers

    try:
        return containers.connect()
    except DockerUnavailableError as exc:
        pytest.skip(f"no Docker daemon: {exc}")


@pytest.fixture(scope="session")
def cpu_image(docker_client: DockerClient) -> str:
    """Build (or reuse) the CPU tritonserver image; ~60 s the first time on 2 cores."""
    tag = subprocess.run([sys.executable, str(ROOT / "docker" / "build_image.py"),
                          "--print-tag"], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        docker_client.images.get(tag)
        return tag
    except Exception:
        pass
    if shutil.which("debootstrap") is None:
        pytest.skip(f"image {tag} is missing and debootstrap is not installed "
                    "(apt-get install -y debootstrap) to build it")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "docker" / "build_image.py")],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"docker/build_image.py failed:\n{done.stderr[-3000:]}")
    print(f"\nimage {tag} built in {time.perf_counter() - start:.1f} s")
    return done.stdout.strip().splitlines()[-1]
