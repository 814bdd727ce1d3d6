"""When the tracking store itself stops accepting writes (a read-only or full volume, a
database that went away): told apart from a job's own failure, so that the sweep stops with
one line instead of a traceback per write, and what was measured is kept on disk."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

# What SQLAlchemy/SQLite, PostgreSQL and the file system say when writes are refused.
_REFUSED = re.compile(r"readonly database|read-only|disk I/O error|database or disk is full|"
                      r"No space left|unable to open database file|Read-only file system|"
                      r"cannot execute .* in a read-only transaction", re.IGNORECASE)
_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def store_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the tracking store refusing writes: raised by
    MLflow (its SQL store, its artifact repository), not a full engine cache or a model's
    own error that happen to say "no space left"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        refused = (isinstance(current, OSError) and current.errno in _ERRNOS) or \
            bool(_REFUSED.search(str(current)))
        if refused and _raised_by_mlflow(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_by_mlflow(exc: BaseException) -> bool:
    """Whether MLflow raised it (an MlflowException) or it passed through MLflow's code."""
    if type(exc).__module__.startswith("mlflow"):
        return True
    marker = f"{os.sep}mlflow{os.sep}"
    tb = exc.__traceback__
    while tb is not None:
        if marker in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def reason(exc: BaseException) -> str:
    """The store's own words, one line, without SQL."""
    current: BaseException | None = exc
    while current is not None:
        text = str(current).splitlines()[0] if str(current) else ""
        found = _REFUSED.search(text)
        if found:
            return text[:200]
        current = current.__cause__ or current.__context__
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def keep_results(folder: Path, record: dict[str, Any]) -> Path:
    """Write ``results.json`` into the job's folder, atomically (a temporary file renamed
    over it, removed if the write fails): the figures the store would not take."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "results.json"
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True, default=str, ensure_ascii=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
