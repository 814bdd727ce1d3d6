"""Engine builders: one protocol, one module per implementation, one factory."""

from __future__ import annotations

from sweep.build.base import Builder, Engine

__all__ = ["Builder", "Engine", "make_builder"]


def make_builder(name: str, **options: object) -> Builder:
    """The builder named by ``cfg.builder.name`` (``emulate``, ``trtexec``, ``tensorrt``)."""
    from sweep.errors import ConfigError

    if name == "emulate":
        from sweep.build.emulate import EmulateBuilder

        return EmulateBuilder(**options)  # type: ignore[arg-type]
    if name == "trtexec":
        from sweep.build.trtexec import TrtexecBuilder

        return TrtexecBuilder(**options)  # type: ignore[arg-type]
    if name == "tensorrt":
        from sweep.build.tensorrt_api import TensorRTBuilder

        return TensorRTBuilder(**options)  # type: ignore[arg-type]
    raise ConfigError(f"builder={name!r} is unknown; expected emulate, trtexec or tensorrt.")
