"""The tracking store refuses a job's measured figures, then comes back: the next sweep
puts them into the run the first sweep had to leave RUNNING (real SQLite store made
immutable in the real sweep process, real jobs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sweep.cli import ExitCode
from sweep.tracking import tags as tag
from tests.faults.conftest import Row, assert_clean, run_sweep, start_sweep
from tests.faults.refusing_store import DB_ENV, sitecustomize
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

ARGS = ["-m", "trt.precision=fp32,fp16", "dataset=demo_tiny", "dataset.limit=2",
        "eval.streams=1"]


@pytest.mark.fault("the tracking store refuses a job's measured figures (SQLite file made "
                   "immutable as job 1 logs its WER), then is writable again and the same "
                   "sweep is run again",
                   "sweep 1 stops (exit 1) keeping the figures in results.json; sweep 2 "
                   "logs them to job 1's run (FINISHED, recovered_from), closes sweep 1's "
                   "parent FAILED naming the file, resumes job 1; nothing left RUNNING")
def test_refused_figures_are_recovered_by_the_next_sweep(tmp_path: Path, warm_cache: Path,
                                                         row: Row) -> None:
    if subprocess.run(["chattr", "--help"], capture_output=True).returncode not in (0, 1):
        pytest.skip("chattr is not available")
    db = tmp_path / "mlruns" / "mlflow.db"
    hook = sitecustomize(tmp_path / "hook")
    first = start_sweep(ARGS, tmp_path, db=db, cache=warm_cache,
                        env={"PYTHONPATH": f"{hook}{os.pathsep}{ROOT}", DB_ENV: str(db)})
    try:
        first.wait(300)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    err = first.stderr
    assert first.proc.returncode == ExitCode.MLFLOW_FAILED, (first.proc.returncode, err[-3000:])
    assert "tracking store stopped accepting writes" in err, err[-3000:]
    assert err.count("Traceback") == 0, err[-5000:]
    kept = tmp_path / "sweep" / "0" / "results.json"
    saved = json.loads(kept.read_text())
    assert 0.0 <= saved["metrics"]["wer"] <= 1.0 and "latency_p99_ms" in saved["metrics"]
    # What today's store holds of it: the run and its parent left RUNNING, no WER.
    (job,) = first.jobs()
    (parent,) = first.parents()
    assert saved["run_id"] == job.info.run_id and saved["parent_run_id"] == parent.info.run_id
    assert (job.info.status, parent.info.status) == ("RUNNING", "RUNNING")
    assert "wer" not in job.data.metrics

    again = run_sweep(ARGS, tmp_path, db=db, cache=warm_cache, name="again")
    assert again.proc.returncode == ExitCode.OK, again.stderr[-3000:]
    assert f"run {job.info.run_id} FINISHED: the store refused writes at " \
           f"{saved['refused_at']}; results recovered from {kept}" in again.stderr, \
        again.stderr[-3000:]
    runs = {r.info.run_id: r for r in again.runs()}
    recovered, old_parent = runs[job.info.run_id], runs[parent.info.run_id]
    assert recovered.info.status == "FINISHED"
    assert recovered.data.metrics["wer"] == saved["metrics"]["wer"]
    assert recovered.data.metrics["latency_p99_ms"] == saved["metrics"]["latency_p99_ms"]
    assert recovered.data.tags[tag.RECOVERED_FROM] == str(kept)
    assert old_parent.info.status == "FAILED"
    assert old_parent.data.tags[tag.ERROR] == (
        f"the store refused writes at {saved['refused_at']}; job results kept in {kept}")
    # The recovered run is this sweep command's measurement: the second sweep resumes it
    # (not measured again) and judges it with the job it ran.
    new_parent = next(p for p in again.parents() if p.info.run_id != parent.info.run_id)
    mine = sorted((r for r in again.jobs() if r.data.tags.get(tag.PARENT_RUN)
                   == new_parent.info.run_id), key=lambda r: int(r.data.params["job.num"]))
    assert [r.info.status for r in mine] == ["FINISHED", "FINISHED"]
    assert mine[0].data.tags[tag.RESUMED_FROM] == job.info.run_id
    assert mine[0].data.metrics["wer"] == saved["metrics"]["wer"]
    assert "not judged" not in mine[0].data.tags[tag.VERDICT], mine[0].data.tags[tag.VERDICT]
    assert [r.info.run_id for r in again.runs() if r.info.status == "RUNNING"] == []
    reason = old_parent.data.tags[tag.ERROR].split(";")[0]
    row.outcome(f"sweep 1: exit 1, WER {saved['metrics']['wer']:.4f} kept in "
                f"{kept.relative_to(tmp_path)}, run and parent RUNNING; sweep 2: run "
                f"FINISHED with WER {recovered.data.metrics['wer']:.4f} (= results.json), "
                f"recovered_from tagged, old parent FAILED '{reason}; job results kept in "
                f"...', job 1 resumed (verdict: {mine[0].data.tags[tag.VERDICT][:40]}), "
                "exit 0")
    row.cleanup(assert_clean(first, again))
