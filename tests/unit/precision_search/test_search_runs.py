"""A resumed search's MLflow parent run (real SQLite store, real processes): the session
that reopens the parent takes it over, so a sweep started while the search runs does not
take the reopened parent for a run its dead first session left behind and end it KILLED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweep.precision_search.outputs import SearchRuns
from sweep.tracking import tags as tag
from sweep.tracking.runs import process_identity
from sweep.tracking.store import open_store
from tests.support.paths import ROOT

EXPERIMENT = "precision-search-owner"

# The first session of a search, in a process of its own: it opens the parent run, then is
# interrupted mid-search (Ctrl-C), handled as cli.py's _ranked handles it: the parent ends
# KILLED, owned by a process that no longer exists.
FIRST_SESSION = """
import os, signal, sys, time
from pathlib import Path
from sweep.precision_search.outputs import SearchRuns
from sweep.tracking.store import open_store

store = open_store(sys.argv[1], sys.argv[2], sys.argv[3], Path.cwd())
runs = SearchRuns(store, "precision search int8 (test)", {"search.target": "int8"})
print(runs.run_id, flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)
except KeyboardInterrupt:
    runs.finish("KILLED")
    sys.exit(130)
"""

# A sweep starting while the resumed search runs: its orphan check (sweep/job.py and the
# sweep's callback call it first thing), in a process of its own as a sweep would be.
SWEEP_ORPHAN_CHECK = """
import sys
from pathlib import Path
from sweep.tracking.recover import close_orphaned_runs
from sweep.tracking.store import open_store

store = open_store(sys.argv[1], sys.argv[2], sys.argv[3], Path.cwd())
print(" ".join(close_orphaned_runs(store)), flush=True)
"""


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_resumed_search_owns_its_parent_and_a_new_sweep_leaves_it_running(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    artifacts = str(tmp_path / "artifacts")
    first = _python(FIRST_SESSION, uri, EXPERIMENT, artifacts)
    assert first.returncode == 130, first.stderr[-3000:]
    parent_id = first.stdout.split()[0]
    client = MlflowClient(uri)
    left = client.get_run(parent_id)
    assert left.info.status == "KILLED"
    first_owner = left.data.tags[tag.OWNER]
    host, _, pid, _ = first_owner.rsplit("/", 3)
    assert int(pid) != os.getpid() and process_identity(int(pid)) != first_owner  # it is gone

    # The second session: the same command, reopening the parent its history names.
    store = open_store(uri, EXPERIMENT, artifacts, tmp_path)
    runs = SearchRuns(store, "precision search int8 (test)", {"search.target": "int8"},
                      resume_id=parent_id)
    assert runs.resumed and runs.run_id == parent_id
    reopened = client.get_run(parent_id)
    assert reopened.info.status == "RUNNING"
    me = process_identity(os.getpid())
    assert me is not None and me.rsplit("/", 3)[0] == host
    assert reopened.data.tags[tag.OWNER] == me, \
        "the reopened parent still names the first session's process as its owner"

    # A sweep started meanwhile on the same store closes what dead processes left RUNNING:
    # not the parent of the search that is running now.
    sweep = _python(SWEEP_ORPHAN_CHECK, uri, EXPERIMENT, artifacts)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert parent_id not in sweep.stdout.split()
    after = client.get_run(parent_id)
    assert after.info.status == "RUNNING", after.data.tags.get(tag.ERROR)
    assert tag.ERROR not in after.data.tags

    runs.finish("FINISHED")
    assert client.get_run(parent_id).info.status == "FINISHED"
