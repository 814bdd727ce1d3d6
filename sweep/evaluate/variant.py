"""How a client prepares chunks, when it departs from what the model interface says.

The seed's Triton client and T-one's ONNX pipeline disagree on WER mostly through the
client side (../shared/seed/): how much left context a stateless preprocessing step gets,
and what the int16 samples are divided by. ``chunk_inputs`` takes a :class:`ClientVariant`
so the doctor can re-run the reference the way a mis-configured client would feed the
server, and stream to a server the same way. ``ClientVariant()`` is today's client.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.errors import ConfigError


@dataclass(frozen=True)
class ClientVariant:
    """``None`` means "as the model interface says".

    left_context_samples: samples of the previous chunk the client really sends in front
        of each chunk (skip_preprocessor only). The server's input width is fixed
        (chunk + the interface's left context), so what is not sent arrives as zeros:
        what a stateless preprocessing step that pads its input sees.
    scale: what the client divides int16 samples by before sending. The ensemble's
        client divides by 32767 (``model.scale``); the monolithic model takes raw int16
        values (a divisor of 1), so another divisor there means a client that sends
        float audio into the INT32 input (truncated, as a numpy cast does).
    """

    left_context_samples: int | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.left_context_samples is not None and self.left_context_samples < 0:
            raise ConfigError(f"left context {self.left_context_samples} samples; expected "
                              "0 or more.")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"input scale {self.scale}; expected a positive divisor.")

    @property
    def is_default(self) -> bool:
        return self.left_context_samples is None and self.scale is None

    def describe(self) -> str:
        parts = []
        if self.left_context_samples is not None:
            parts.append(f"left context {self.left_context_samples} samples")
        if self.scale is not None:
            parts.append(f"samples divided by {self.scale:g}")
        return ", ".join(parts) or "as the model interface says"


DEFAULT = ClientVariant()
