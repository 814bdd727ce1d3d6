"""Runs left RUNNING by a sweep process that no longer exists end KILLED at the next
sweep; runs of live processes and of other hosts are left alone (real SQLite store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from sweep.tracking.recover import _ORPHANS_CHECKED, close_orphaned_runs
from sweep.tracking.runs import environment_tags, process_identity
from sweep.tracking.store import open_store


def test_only_runs_of_dead_processes_of_this_host_are_closed(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/mlflow.db", "orphans",
                             str(tmp_path / "artifacts"), tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    # What the dead process would have tagged its runs with (its pid and a start time it
    # can no longer have).
    me = process_identity(os.getpid())
    assert me is not None
    host, boot, _, _ = me.rsplit("/", 3)
    owners = {"dead": f"{host}/{boot}/{dead.stdout.strip()}/1",
              "alive": me,
              "elsewhere": f"another-host/{boot}/1/1",
              "before the reboot": f"{host}/an-older-boot/{os.getpid()}/1"}
    client = MlflowClient(store.uri)
    ids = {name: client.create_run(store.experiment_id, run_name=name,
                                   tags={tag.OWNER: owner}).info.run_id
           for name, owner in owners.items()}

    _ORPHANS_CHECKED.clear()
    closed = close_orphaned_runs(store)
    assert sorted(c.run_id for c in closed) == sorted([ids["dead"], ids["before the reboot"]])
    assert {c.status for c in closed} == {"KILLED"}  # nothing kept: killed, as before
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING",
                      "before the reboot": "KILLED"}
    assert "ended without closing it" in client.get_run(ids["dead"]).data.tags["error"]
    assert close_orphaned_runs(store) == []  # once per store and process


def test_runs_carry_their_process(tmp_path: Path):
    assert environment_tags()[tag.OWNER] == process_identity(os.getpid())
