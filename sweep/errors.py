"""The project's own exceptions.

Every message says what was expected and how to fix it; third-party errors are wrapped at
the boundary with the original attached as ``__cause__``.
"""

from __future__ import annotations

from pathlib import Path


class SweepError(Exception):
    """Base class: one clear, actionable message for a user."""


class ConfigError(SweepError):
    """A configuration value is invalid."""


class FlagSetError(ConfigError):
    """A flag set that TensorRT (or the emulator) would reject."""


class ModelError(SweepError):
    """The ONNX model is missing, unreadable or does not match the model interface."""


class DatasetError(SweepError):
    """A dataset folder, manifest line or audio file is not what the sweep expects."""


class BuildError(SweepError):
    """An engine build failed; ``log_path`` points at the builder's log when there is one."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


class DeadlineExpired(BaseException):
    """``builder.timeout_s`` ran out during a build in this process (its alarm raises this).

    A BaseException, like KeyboardInterrupt, on purpose: the build's path has fallbacks
    that catch ``Exception`` (shape inference that a custom op defeats), and an alarm that
    landed in one of them was taken for that step's own failure and the build went on to
    finish. The builder that owns the log turns it into a :class:`BuildError`.
    """


class ServerError(SweepError):
    """Triton could not be started, did not become ready, or died."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


class DockerUnavailableError(ServerError):
    """No Docker daemon answers."""


class EvaluationError(SweepError):
    """Streaming evaluation against the server failed."""


class TrackingError(SweepError):
    """The MLflow tracking store cannot be used."""


class PromoteError(SweepError):
    """Promotion refused: nothing qualifies, a path is unsafe, or an engine changed."""


class DoctorError(SweepError):
    """The parity doctor cannot compare: server down, interface mismatch, nothing to stream."""
