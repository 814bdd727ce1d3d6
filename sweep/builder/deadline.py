"""``builder.timeout_s`` for a builder that runs in this process."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from sweep.builder.base import Builder
from sweep.engine import Engine
from sweep.errors import BuildError, DeadlineExpired
from sweep.flags import FlagSet


class Deadline:
    """``builder.timeout_s`` for the emulate builder running in this process; the
    containerised builders (trtexec, ``in_container``) enforce it on their container.

    SIGALRM raises :class:`DeadlineExpired` inside the build; the builder records it in its
    log and fails with a :class:`BuildError`. It is not an ``Exception``, so no fallback on
    the build's path can swallow it and carry on. A single long C call (an ONNX Runtime
    session being created) is interrupted when it returns, not in its middle. Only the main
    thread receives signals: elsewhere (a launcher running jobs in threads) the build runs
    without a deadline.
    """

    def __init__(self, builder: Builder, timeout_s: float) -> None:
        self.inner = builder
        self.name = builder.name
        self.timeout_s = float(timeout_s)

    def version(self) -> str:
        return self.inner.version()

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        if self.timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
            return self.inner.build(onnx_path, flags, workdir)

        def expired(signum: int, frame: object) -> None:
            raise DeadlineExpired(f"the build did not finish within builder.timeout_s="
                                  f"{self.timeout_s:g} s (raise it for large models)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            return self.inner.build(onnx_path, flags, workdir)
        except DeadlineExpired as exc:  # fired outside the builder's own handling
            raise BuildError(str(exc)) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
