"""When the tracking store itself stops accepting writes (a read-only or full volume, a
database that went away): told apart from a job's own failure, so that the sweep stops with
one line instead of a traceback per write, and what was measured is kept on disk."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


RESULTS = "results.json"
# What a job must have measured for its figures to stand as a result (the sweeper's
# objectives, resume's and the verdict's): without them a kept record is a failure's.
MEASURED = ("wer", "cer", "latency_p99_ms")


def keep_results(folder: Path, record: dict[str, Any]) -> Path:
    """Write ``results.json`` into the job's folder, atomically (a temporary file renamed
    over it, removed if the write fails): the figures the store would not take, the run
    they belong to (``run_id``, ``parent_run_id``) and when the store refused them
    (``refused_at``, added here), so that the next sweep can close that run with them."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"refused_at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    target = folder / RESULTS
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True, default=str, ensure_ascii=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True)
class KeptResults:
    """A job's ``results.json``, read back: what the store refused to take."""

    path: Path
    run_id: str | None
    parent_run_id: str | None
    label: str
    error: str
    refused_at: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether it holds a whole measurement (every figure of :data:`MEASURED`, finite):
        the job's evaluation ended and only the store's writes failed."""
        return all(math.isfinite(self.metrics.get(k, math.nan)) for k in MEASURED)


def read_kept(path: Path) -> KeptResults | None:
    """``path`` (a results.json) as written by :func:`keep_results`; None when it is not
    there or not such a record (a user's own file of that name is left alone)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("metrics", {}), dict):
        return None
    metrics: dict[str, float] = {}
    for name, value in raw.get("metrics", {}).items():
        try:
            metrics[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    refused_at = raw.get("refused_at") or datetime.fromtimestamp(
        path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return KeptResults(path=path, run_id=raw.get("run_id") or None,
                       parent_run_id=raw.get("parent_run_id") or None,
                       label=str(raw.get("label") or ""), error=str(raw.get("error") or ""),
                       refused_at=str(refused_at), metrics=metrics)
