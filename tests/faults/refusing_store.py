"""Fault injection for tests/faults/test_store_recovery.py: the tracking store stops
accepting writes at the moment a job logs its measured figures (its SQLite file made
immutable, as a volume that went read-only or full does), in the real sweep process.

Loaded into ``python -m sweep`` through a ``sitecustomize`` on PYTHONPATH that calls
:func:`install`. Only the moment is chosen here; the refusal is SQLite's and MLflow's own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The SQLite file to make immutable (``chattr +i``, as root).
DB_ENV = "TRT_SWEEP_TEST_REFUSE_DB"


def install() -> None:
    db = os.environ.get(DB_ENV)
    if not db:
        return
    from sweep.tracking.runs import JobRun

    original = JobRun.metrics
    done: list[bool] = []

    def metrics(self: JobRun, values: dict[str, float]) -> None:
        if "wer" in values and not done:  # the first job's evaluation has just ended
            done.append(True)
            subprocess.run(["chattr", "+i", db], check=True)
        original(self, values)

    JobRun.metrics = metrics  # type: ignore[method-assign]


def sitecustomize(folder: Path) -> Path:
    """Write the ``sitecustomize.py`` that installs the hook into ``folder`` (for
    PYTHONPATH, before the repository root)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "from tests.faults.refusing_store import install\n\ninstall()\n")
    return folder
