"""Child processes that must not outlive the sweep: stopped as a whole process group, and
watched by a detached watchdog in case the sweep itself is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def exited(proc: subprocess.Popen[bytes], wait_s: float = 1.0) -> bool:
    # A killed server's sockets close a moment before the process can be reaped.
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


_WATCHDOGS: dict[int, int] = {}  # server pid -> its watchdog's process group

# The watchdog: forks once so that it is nobody's child, then polls the server and the
# sweep; a zombie counts as gone. Plain Python with no imports of ours (-I -S: it starts
# in milliseconds), argument lists only, no shell.
_WATCHDOG = """
import os, signal, sys, time
group, owner = int(sys.argv[1]), int(sys.argv[2])
if os.fork():
    os._exit(0)
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
while alive(group) and alive(owner):
    time.sleep(1)
try:
    os.killpg(group, signal.SIGKILL)
except OSError:
    pass
"""


def watch(proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """A server must not outlive the sweep that started it, nor its python-backend stubs
    the server: the stubs notice a dead server but can hang on their way out.

    A small watchdog polls the server and this process once a second; when either is gone
    it SIGKILLs the server's whole process group. It is not this process's child (it forks
    away at once), because what ends a sweep may kill the sweep's children one by one: a
    Ray worker that exits SIGKILLs each of its direct children, the server and a watchdog
    among them, and that left the stubs running. Polling also covers the sweep's own
    SIGKILL and the OOM killer, which no signal handler sees.
    """
    starter = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(proc.pid), str(os.getpid())],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    starter.wait()  # the watchdog lives on in the starter's process group
    _WATCHDOGS[proc.pid] = starter.pid


def unwatch(proc: subprocess.Popen[bytes]) -> None:
    group = _WATCHDOGS.pop(proc.pid, None)
    if group is not None:
        _kill_group(group)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0,
                 regions: list[Path] | None = None) -> None:
    """SIGTERM the process group, wait, then SIGKILL: nothing may outlive the job, not even
    the python-backend stubs' shared-memory ``regions``."""
    try:
        _stop(proc, grace_s, regions or [])
    finally:
        unwatch(proc)
        for region in regions or []:
            with contextlib.suppress(OSError):
                region.unlink(missing_ok=True)


def _stop(proc: subprocess.Popen[bytes], grace_s: float, regions: list[Path]) -> None:
    if proc.poll() is not None:
        # The server died on its own (or was killed): its python backend stubs live on in
        # its process group until they notice, so the group still gets a SIGKILL.
        _kill_group(proc.pid)
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        # A stopped (SIGSTOP'd, frozen) server only acts on SIGTERM once it runs again.
        os.killpg(proc.pid, signal.SIGCONT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        # Once every python-backend stub has released its shared-memory region the models
        # are unloaded; what is left is Triton's exit loop, which polls once a second (2 s
        # of every job). Nothing remains to clean up, so the SIGKILL below may end it.
        if regions and not any(r.exists() for r in regions):
            break
        time.sleep(0.02)
    # Also when the server exited in time: whatever of its group is left goes with it.
    proc.poll()
    _kill_group(proc.pid)
    proc.wait()


def _kill_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGKILL a process group and wait until it is gone: SIGKILL is delivered
    asynchronously, and the stubs (Triton's children, not ours) cannot be waited for."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        if _group_only_zombies(pgid):
            return
        time.sleep(0.02)


def _group_only_zombies(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and \
                    "State:\tZ" not in (entry / "status").read_text():
                return False
        except (OSError, ProcessLookupError):
            continue
    return True


def start_group(argv: list[str], log: Path, *, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> int:
    """Start a long-running service in a session of its own, detached from this process
    (it outlives the command that started it; ``stop_group`` ends it and everything it
    spawned). Returns its pid, which is also its process group id."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return not _group_only_zombies(pgid)


def stop_group(pgid: int, sig: signal.Signals = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """``sig`` to a process group started by ``start_group``, then SIGKILL to whatever of
    it is left after ``grace_s``; returns once nothing of the group runs."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.1)
    _kill_group(pgid)
