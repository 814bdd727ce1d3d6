"""One sweep per sweep folder: the parent-run callback claims ``hydra.sweep.dir`` before it
opens the parent run, and gives it back when the sweep ends.

Jobs find their parent run through the folder (``parent_run_id``, ``sweep.json``): two
sweeps running in one folder would file their jobs under each other's parent and both
exit 0, with wrong tables and wrong promote candidates. A folder held by a live sweep is
refused; one left by a sweep that ended (or whose process died) is taken over, so rerunning
a sweep in a fixed folder (the cluster examples) still resumes it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from sweep.errors import ConfigError
from sweep.tracking.runs import process_identity

LOCK_FILE = "sweep.lock"


def _alive(owner: str) -> bool | None:
    """Whether the process named by ``owner`` (``process_identity``) still runs: None when
    it ran on another host (a shared folder), where this host cannot tell."""
    parts = owner.rsplit("/", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return False  # not written by a sweep: nothing holds it
    if parts[0] != platform.node():
        return None
    return process_identity(int(parts[2])) == owner


def claim(sweep_dir: Path) -> Path:
    """Take the folder for this process's sweep; returns the lock to ``release``. Raises
    ``ConfigError`` when a live sweep (or one on another host) holds it."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    me = process_identity(os.getpid()) or f"{platform.node()}/?/{os.getpid()}/?"
    lock = sweep_dir / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = lock.read_text().strip()
            except FileNotFoundError:
                continue  # released between the two calls: try again
            alive = _alive(owner)
            if alive is False:
                lock.unlink(missing_ok=True)  # a sweep that died without releasing it
                continue
            pid = owner.rsplit("/", 3)[2] if owner.count("/") >= 3 else "?"
            host = owner.rsplit("/", 3)[0]
            where = (f"process {pid} on this host" if alive else
                     f"process {pid} on host {host}, which this host cannot check")
            raise ConfigError(
                f"the sweep folder {sweep_dir} (hydra.sweep.dir) is in use by another sweep "
                f"({where}); two sweeps in one folder would file their jobs under each "
                "other's parent run. Give this sweep its own hydra.sweep.dir (the default "
                "makes a fresh one per sweep)" + ("" if alive else
                f", or delete {lock} if that sweep is no longer running") + ".") from None
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return lock
    raise ConfigError(f"the sweep folder {sweep_dir} could not be claimed: {lock} keeps "
                      "changing; is another sweep starting there?")


def release(lock: Path | None) -> None:
    """Give the folder back (only a lock this process wrote)."""
    if lock is None:
        return
    try:
        if lock.read_text().strip() == (process_identity(os.getpid()) or ""):
            lock.unlink()
    except OSError:
        pass
