"""This test session's token and the sweep processes it started."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

# Every process a test starts inherits this token, so the leak check sees this test
# session's servers only (not those of another sweep running on the same machine).
TOKEN = uuid.uuid4().hex
os.environ["TRT_SWEEP_TEST_TOKEN"] = TOKEN


def our_processes() -> list[int]:
    """Pids of live processes started by the sweep in this test session (the sweep's
    servers carry TRT_SWEEP=1; the test session's token marks which are ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if b"TRT_SWEEP=1" in env and f"TRT_SWEEP_TEST_TOKEN={TOKEN}".encode() in env \
                and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


def default_sigint() -> None:
    """``preexec_fn`` for a child a test signals as a terminal would: SIGINT at its default,
    even when pytest itself runs as a script's background job (which inherits SIGINT
    ignored, and would pass that on, so Ctrl-C would never reach the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
