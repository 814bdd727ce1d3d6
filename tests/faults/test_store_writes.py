"""The tracking store stops accepting writes mid-sweep (the SQLite file made immutable, as a
full or read-only volume does): one clear line, what was measured kept, nothing left
half-written, the sweep stopped."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from sweep.tracking import tags as tag
from tests.faults.conftest import Row, start_sweep

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]


def _finished_jobs(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return int(con.execute(
                "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                f"where t.key = '{tag.KIND}' and t.value = 'job' "
                "and r.status = 'FINISHED'").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.fault("the tracking store stops accepting writes mid-sweep (SQLite file made "
                   "immutable after job 1)",
                   "one clear line naming the store, job 1 kept, the running job's results "
                   "kept in its folder, no partial files, the sweep stopped")
def test_store_stops_accepting_writes(tmp_path: Path, row: Row) -> None:
    if subprocess.run(["chattr", "--help"], capture_output=True).returncode not in (0, 1):
        pytest.skip("chattr is not available")
    db = tmp_path / "mlruns" / "mlflow.db"
    sweep = start_sweep(["-m", "trt.precision=fp32,fp16,bf16", *FAST], tmp_path, db=db)
    deadline = time.monotonic() + 240
    while _finished_jobs(db) < 1:
        assert sweep.proc.poll() is None, sweep.stderr
        assert time.monotonic() < deadline, "job 1 never finished"
        time.sleep(0.2)
    subprocess.run(["chattr", "+i", str(db)], check=True)
    try:
        sweep.wait(300)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    err = sweep.stderr
    assert sweep.proc.returncode == 1, (sweep.proc.returncode, err[-3000:])
    lines = [line for line in err.splitlines() if "tracking store stopped accepting writes" in line]
    assert lines, err[-3000:]
    assert err.count("Traceback") == 0, err[-5000:]
    # Job 1 is in the store; the job that was running kept its figures in its folder.
    # By status, not by job.num: the running job's params may be what the store refused.
    jobs = sweep.jobs()
    finished = [r for r in jobs if r.info.status == "FINISHED"]
    assert len(finished) == 1 and "wer" in finished[0].data.metrics, \
        [(r.info.run_name, r.info.status) for r in jobs]
    kept = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert kept, f"no results.json under {tmp_path / 'sweep'}: {err[-2000:]}"
    saved = json.loads(kept[0].read_text())
    assert saved["status"] == "FAILED" and "stopped accepting writes" in saved["error"]
    assert str(kept[0]) in err
    assert "Launching" in sweep.output and err.count("job 3/3") == 0  # the sweep stopped
    assert not list(tmp_path.rglob("*.tmp*"))
    row.outcome(f"exit 1; '{lines[-1][:160]}'; job 1 FINISHED in the store; "
                f"{kept[0].relative_to(tmp_path)} holds the running job's figures")
