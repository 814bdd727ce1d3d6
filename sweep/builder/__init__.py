"""Engine builders: one protocol, one module per implementation, one factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.builder.base import Builder, BuilderConfig
from sweep.engine import Engine
from sweep.flags import FlagSet

__all__ = ["Builder", "BuilderConfig", "Engine", "build_engine", "builder_for", "make_builder"]


def make_builder(name: str, **options: Any) -> Builder:
    """The builder named ``name`` (``emulate``, ``trtexec``, ``tensorrt``) with exactly the
    options its constructor takes (an unknown one is a TypeError, never ignored)."""
    from sweep.errors import ConfigError

    if name == "emulate":
        from sweep.builder.emulate import EmulateBuilder

        return EmulateBuilder(**options)
    if name == "trtexec":
        from sweep.builder.trtexec import TrtexecBuilder

        return TrtexecBuilder(**options)
    if name == "tensorrt":
        from sweep.builder.tensorrt_api import TensorRTBuilder

        return TensorRTBuilder(**options)
    raise ConfigError(f"builder={name!r} is unknown; expected emulate, trtexec or tensorrt.")


def builder_for(cfg: BuilderConfig, job: str | None = None,
                reference: Any = None) -> Builder:
    """The ``builder`` config group as a builder. ``builder.timeout_s`` bounds every build:
    the containerised builders on their container, the emulator in this process."""
    if cfg.name == "emulate" and cfg.in_container:
        from sweep.builder.container import ContainerBuilder

        return ContainerBuilder(builder="emulate", image=cfg.image, timeout_s=cfg.timeout_s,
                                options={"intra_op_num_threads": cfg.intra_op_threads},
                                docker_base_url=cfg.docker_base_url, job=job)
    if cfg.name == "emulate":
        from sweep.builder.deadline import Deadline

        return Deadline(make_builder("emulate", intra_op_num_threads=cfg.intra_op_threads),
                        cfg.timeout_s)
    if cfg.name == "trtexec":
        return make_builder("trtexec", image=cfg.image, gpus=cfg.gpus, timeout_s=cfg.timeout_s,
                            trtexec_path=cfg.trtexec_path,
                            timing_cache_dir=cfg.timing_cache_dir,
                            docker_base_url=cfg.docker_base_url, job=job,
                            reference=reference)
    if cfg.name == "tensorrt":
        return make_builder("tensorrt", timing_cache_dir=cfg.timing_cache_dir)
    return make_builder(cfg.name)  # refused there, with the known names


def build_engine(cfg: BuilderConfig, onnx_path: Path, flags: FlagSet,
                 job: str | None = None, reference: Any = None,
                 onnx_digest: str | None = None) -> Engine:
    """Build ``flags`` through the content-addressed engine cache (``builder.cache_dir``):
    an identical flag set on the same model, builder and device is never built twice.
    ``onnx_digest``: the sha256 of ``onnx_path`` when the caller has it."""
    from sweep.builder.cache import EngineCache
    from sweep.infra.device import engine_device

    cache = EngineCache(cfg.cache_dir, max_gb=cfg.cache_max_gb)
    if flags.tunes_routes and cfg.name != "trtexec":
        from sweep.errors import FlagSetError

        raise FlagSetError(
            f"trt.tune_build_routes={flags.tune_build_routes} with builder={cfg.name}: build "
            "routes are trtexec's Global Performance Tuner (TensorRT 11.1+); the emulator has "
            "no TensorRT compiler to route. Use builder=trtexec on a GPU host, or plan it "
            "with builder=trtexec builder.dry_run=true builder.tensorrt_version=11.4.")
    return cache.build(builder_for(cfg, job, reference), onnx_path, flags,
                       engine_device(cfg.name), onnx_digest=onnx_digest)
