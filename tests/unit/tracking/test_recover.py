"""Runs left RUNNING when the store stopped accepting writes are closed by the next sweep
from the results.json their jobs kept: the figures logged, FINISHED for a whole
measurement, FAILED with the reason otherwise, the parent FAILED naming the files; never
the generic KILLED (real SQLite store; tests/faults/test_store_recovery.py makes the store
refuse a real sweep)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from sweep.tracking.failures import keep_results, read_kept
from sweep.tracking.recover import _ORPHANS_CHECKED, close_orphaned_runs
from sweep.tracking.recover import main as recover_main
from sweep.tracking.runs import process_identity
from sweep.tracking.store import Store, open_store

MEASURED = {"wer": 0.125, "cer": 0.05, "latency_p99_ms": 42.0, "wer_ci_low": 0.1,
            "wer_ci_high": 0.2, "internal/decode_seconds": 0.3}


def _dead_owner() -> str:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    me = process_identity(os.getpid())
    assert me is not None
    host, boot, _, _ = me.rsplit("/", 3)
    return f"{host}/{boot}/{dead.stdout.strip()}/1"


def _left_running(tmp_path: Path) -> tuple[Store, MlflowClient, dict[str, Any]]:
    """What a sweep leaves when the store refuses writes in its jobs: the parent and three
    job runs RUNNING, two of the jobs' folders holding a results.json."""
    store = open_store(f"sqlite:///{tmp_path}/mlflow.db", "recover",
                       str(tmp_path / "artifacts"), tmp_path)
    client = MlflowClient(store.uri)
    owner = _dead_owner()
    sweep_dir = tmp_path / "sweep"
    parent = client.create_run(store.experiment_id, run_name="sweep", tags={
        tag.KIND: "sweep", tag.OWNER: owner, tag.SWEEP_DIR: str(sweep_dir)}).info.run_id

    def job(num: int, dataset: bool = True) -> str:
        tags = {tag.KIND: "job", tag.OWNER: owner, tag.PARENT_RUN: parent,
                tag.JOB_DIR: str(sweep_dir / str(num)), tag.BUILDER: "emulate"}
        if dataset:
            tags |= {tag.DATASET: "demo_tiny", tag.DATASET_DIGEST: "abc123"}
        run_id = client.create_run(store.experiment_id, run_name=f"fp{num}",
                                   tags=tags).info.run_id
        client.log_param(run_id, "job.num", str(num))
        return run_id

    runs = {"measured": job(0), "cut short": job(1), "killed": job(2),
            "parent": parent}
    error = "the tracking store stopped accepting writes (attempt to write a readonly database)"
    keep_results(sweep_dir / "0", {"label": "fp0", "status": "FAILED", "error": error,
                                   "run_id": runs["measured"], "parent_run_id": parent,
                                   "metrics": MEASURED})
    keep_results(sweep_dir / "1", {"label": "fp1", "status": "FAILED", "error": error,
                                   "run_id": runs["cut short"], "parent_run_id": parent,
                                   "metrics": {"build_seconds": 1.5}})
    # A results.json naming another run (a folder reused) never closes the killed job.
    keep_results(sweep_dir / "2", {"label": "x", "status": "FAILED", "error": error,
                                   "run_id": "0" * 32, "parent_run_id": "f" * 32,
                                   "metrics": MEASURED})
    return store, client, runs


def test_the_next_sweep_recovers_what_the_jobs_kept(tmp_path: Path) -> None:
    store, client, runs = _left_running(tmp_path)
    kept = tmp_path / "sweep" / "0" / "results.json"
    refused_at = json.loads(kept.read_text())["refused_at"]

    _ORPHANS_CHECKED.clear()
    closed = {c.run_id: c for c in close_orphaned_runs(store)}
    assert set(closed) == set(runs.values())
    got = {name: client.get_run(run_id) for name, run_id in runs.items()}
    assert {name: r.info.status for name, r in got.items()} == {
        "measured": "FINISHED", "cut short": "FAILED", "killed": "KILLED",
        "parent": "FAILED"}

    # The whole measurement: every figure kept is in the store, as it was kept.
    measured = got["measured"]
    assert measured.data.metrics == MEASURED
    assert measured.data.tags[tag.RECOVERED_FROM] == str(kept)
    assert tag.ERROR not in measured.data.tags  # FINISHED: a result, not a failure
    note = measured.data.tags[tag.NOTE]
    assert f"the store refused writes at {refused_at}; results recovered from {kept}" in note
    assert "WER 12.50 %" in note  # the job's description, from the recovered figures

    # Cut short: what there was is logged, FAILED with the reason, never KILLED.
    cut = got["cut short"]
    assert cut.data.metrics == {"build_seconds": 1.5}
    assert cut.data.tags[tag.ERROR].startswith(
        "the store refused writes at ") and "not a whole measurement (wer, cer, " \
        "latency_p99_ms not measured)" in cut.data.tags[tag.ERROR]

    assert "ended without closing it" in got["killed"].data.tags[tag.ERROR]
    assert got["killed"].data.metrics == {}

    parent_reason = got["parent"].data.tags[tag.ERROR]
    assert parent_reason == (
        f"the store refused writes at {refused_at}; job results kept in "
        f"{kept}, {tmp_path / 'sweep' / '1' / 'results.json'}")
    assert closed[runs["measured"]].status == "FINISHED"


def test_the_orphans_message_says_what_was_recovered(tmp_path: Path) -> None:
    from sweep.tracking.recover import orphans_message

    store, _, runs = _left_running(tmp_path)
    _ORPHANS_CHECKED.clear()
    text = orphans_message(close_orphaned_runs(store))
    assert f"1 run(s) left RUNNING by a sweep process that no longer exists now end KILLED: " \
           f"{runs['killed']}" in text
    assert f"run {runs['measured']} FINISHED: the store refused writes at " in text
    assert f"run {runs['parent']} FAILED: the store refused writes at " in text
    assert "\n" not in text


def test_the_recover_command_closes_a_sweep_folder(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store, client, runs = _left_running(tmp_path)
    # The store as the sweep read it: its config options (here an override), like every tool.
    code = recover_main([str(tmp_path / "sweep"), f"tracking.uri={store.uri}"])
    assert code == 0
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    # The command closes what results.json files name; a run nothing names is the next
    # sweep's to close.
    assert status == {"measured": "FINISHED", "cut short": "FAILED", "killed": "RUNNING",
                      "parent": "FAILED"}
    assert f"run {runs['measured']} FINISHED" in capsys.readouterr().out
    assert recover_main([str(tmp_path / "sweep"), "--tracking-uri", store.uri]) == 0
    assert "no RUNNING run is named" in capsys.readouterr().out


def test_a_live_sweep_s_runs_are_left_to_it(tmp_path: Path) -> None:
    store, client, runs = _left_running(tmp_path)
    me = process_identity(os.getpid())
    client.set_tag(runs["measured"], tag.OWNER, me)
    assert recover_main([str(tmp_path / "sweep"), "--tracking-uri", store.uri]) == 0
    assert client.get_run(runs["measured"]).info.status == "RUNNING"


def test_kept_results_name_their_run_and_when(tmp_path: Path) -> None:
    path = keep_results(tmp_path, {"run_id": "r1", "parent_run_id": "p1",
                                   "metrics": {"wer": 0.5, "cer": float("nan")}})
    kept = read_kept(path)
    assert kept is not None and kept.run_id == "r1" and kept.parent_run_id == "p1"
    assert kept.refused_at.endswith("+00:00")
    assert not kept.complete  # a NaN CER and no latency are not a measurement
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text("[1, 2]")
    assert read_kept(tmp_path / "other" / "results.json") is None
