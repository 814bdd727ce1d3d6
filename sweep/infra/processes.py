"""Child processes that must not outlive the sweep: stopped as a whole process group, and
watched by a parent-death watchdog in case the sweep itself is killed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
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


_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}


def watch(proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """A server must not outlive a sweep that cannot stop it (SIGKILL, the OOM killer).
    The kernel's parent-death signal, set by util-linux's setpriv, wakes a small shell
    outside the server's process group, which then kills that whole group: tritonserver
    and its python-backend stubs (the stubs do not notice a dead server that nobody
    reaped). The shell ends by itself once the server is gone."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return
    group = proc.pid
    script = (f'trap "kill -KILL -{group} 2>/dev/null; exit 0" TERM; '
              f"while kill -0 {group} 2>/dev/null; do sleep 1; done")
    _WATCHDOGS[proc.pid] = subprocess.Popen(
        [setpriv, "--pdeathsig", "TERM", "--", "sh", "-c", script], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def unwatch(proc: subprocess.Popen[bytes]) -> None:
    watchdog = _WATCHDOGS.pop(proc.pid, None)
    if watchdog is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(watchdog.pid, signal.SIGKILL)  # the shell and its `sleep`
        watchdog.wait()


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
