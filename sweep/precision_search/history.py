"""The search's record on disk: one JSON line per evaluation, so the same command resumes.

The ranked search is deterministic given its evaluations (one ONNX Runtime thread, typed
ONNX cached by content), so resuming is replaying: the search starts again from the top and
every evaluation found here is taken from the file instead of computed, until it reaches
the first one that was never finished. Lines are appended and flushed one at a time; a line
cut short by a kill is ignored on reading (that evaluation is simply made again).

Line types: ``meta`` (the search's identity and MLflow parent run), ``eval`` (one
evaluation: a full-set probe or a group's score on the ranking subset, with the seconds it
took) and ``run`` (the MLflow child run an evaluation was logged as).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sweep.errors import ConfigError


class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, str] = {}
        self.torn = 0  # lines cut short by an interrupted write
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self.torn += 1
                    continue
                kind = record.get("type")
                if kind == "meta":
                    self.meta.update(record["values"])
                elif kind == "eval":
                    self.evals[record["key"]] = record["values"]
                elif kind == "run":
                    self.runs[record["key"]] = record["run_id"]

    @property
    def resumed(self) -> bool:
        return bool(self.evals)

    def check_identity(self, identity: dict[str, Any]) -> None:
        """A history belongs to one search; another model or data set would replay wrong
        numbers."""
        recorded = self.meta.get("identity")
        if recorded is not None and recorded != identity:
            changed = sorted(k for k in set(recorded) | set(identity)
                             if recorded.get(k) != identity.get(k))
            raise ConfigError(
                f"{self.path} records another search (differs in {', '.join(changed)}). "
                "Pass --history PATH for a new record, or --fresh to start this one over.")

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            # One write per line, then flush to disk: a kill leaves whole lines and at
            # most one torn last line.
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def set_meta(self, **values: Any) -> None:
        self.meta.update(values)
        self._append({"type": "meta", "values": values})

    def get(self, key: str) -> dict[str, Any] | None:
        return self.evals.get(key)

    def put(self, key: str, values: dict[str, Any]) -> None:
        self.evals[key] = values
        self._append({"type": "eval", "key": key, "values": values})

    def set_run(self, key: str, run_id: str) -> None:
        self.runs[key] = run_id
        self._append({"type": "run", "key": key, "run_id": run_id})

    def seconds(self) -> float:
        """Work recorded so far, over every session of this search."""
        return sum(float(v.get("seconds", 0.0)) for v in self.evals.values())
