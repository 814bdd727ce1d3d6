"""``python -m sweep`` as a user runs it, against a store, a cache and sweep folders of its
own: the one place the command line is built (tests/integration runs it to the end,
tests/faults starts it and signals it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def sweep_command(args: list[str], tmp: Path, *, db: Path | None = None,
                  cache: Path | None = None, tracking: bool = True,
                  sweep_dir: Path | None = None, run_dir: Path | None = None) -> list[str]:
    """``python -m sweep ARGS`` with the MLflow store (``db``, default
    ``tmp/mlruns/mlflow.db``; its artifacts next to it), the engine cache (default
    ``tmp/cache``) and Hydra's folders (default ``tmp/multirun`` and ``tmp/run``) under
    ``tmp``. ``tracking=False`` leaves the store to ``args``."""
    db = db or tmp / "mlruns" / "mlflow.db"
    store = [f"tracking.uri=sqlite:///{db}",
             f"tracking.artifact_root={db.parent / 'artifacts'}"] if tracking else []
    return [sys.executable, "-m", "sweep", *args, *store,
            f"builder.cache_dir={cache or tmp / 'cache'}",
            f"hydra.sweep.dir={sweep_dir or tmp / 'multirun'}",
            f"hydra.run.dir={run_dir or tmp / 'run'}"]


def run_sweep(args: list[str], tmp: Path, timeout: float = 600
              ) -> subprocess.CompletedProcess[str]:
    """Run the sweep to its end (see ``sweep_command``), its output captured."""
    return subprocess.run(sweep_command(args, tmp), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
