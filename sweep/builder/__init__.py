"""Engine builders: one protocol, one module per implementation, one factory."""

from __future__ import annotations

from sweep.builder.base import Builder
from sweep.engine import Engine

__all__ = ["Builder", "Engine", "make_builder"]


def make_builder(name: str, **options: object) -> Builder:
    """The builder named by ``cfg.builder.name`` (``emulate``, ``trtexec``, ``tensorrt``)."""
    from sweep.errors import ConfigError

    if name == "emulate":
        from sweep.builder.emulate import EmulateBuilder

        return EmulateBuilder(**options)  # type: ignore[arg-type]
    if name == "trtexec":
        from sweep.builder.trtexec import TrtexecBuilder

        return TrtexecBuilder(**options)  # type: ignore[arg-type]
    if name == "tensorrt":
        from sweep.builder.tensorrt_api import TensorRTBuilder

        return TensorRTBuilder(**options)  # type: ignore[arg-type]
    raise ConfigError(f"builder={name!r} is unknown; expected emulate, trtexec or tensorrt.")
