"""What an engine is built for and a run measured on: the part of a cache key and of a
run's tags that says whether two results are comparable."""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """Product names of this host's NVIDIA GPUs (empty without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


def host_device() -> str:
    """``gpu:<product>`` where GPUs exist (a plan runs only on the GPU model it was built
    for), else ``cpu:<processor>``."""
    names = gpu_names()
    if names:
        return "gpu:" + "+".join(sorted(set(names)))
    return f"cpu:{platform.processor() or platform.machine()}"


def engine_device(builder: str) -> str:
    """The cache key's device: emulated engines are plain ONNX and run on any CPU; a
    TensorRT plan is tied to the GPU product (not its index: with one GPU per Ray job the
    same engine must not be rebuilt once per card)."""
    return "cpu" if builder == "emulate" else host_device()
