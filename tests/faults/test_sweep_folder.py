"""One sweep per sweep folder: two sweeps given the same hydra.sweep.dir at once would file
their jobs under each other's parent run and both exit 0. The second is refused before any
work; the first ends with its own jobs; a folder whose sweep ended is taken over."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sweep.errors import ConfigError
from sweep.tracking import tags as tag
from sweep.tracking.runs import process_identity
from sweep.tracking.sweep_folder import LOCK_FILE, claim, release
from tests.faults.conftest import Row, assert_clean, start_sweep

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]


def test_a_live_sweeps_folder_is_refused_and_a_dead_ones_taken_over(tmp_path: Path):
    lock = claim(tmp_path / "a")
    assert lock.read_text().strip() == process_identity(os.getpid())
    with pytest.raises(ConfigError, match=r"in use by another sweep \(process \d+ on this host\)"):
        claim(tmp_path / "a")
    release(lock)
    assert not lock.exists()
    # A sweep that was SIGKILLed never released its folder: a dead pid holds nothing.
    dead = tmp_path / "b"
    dead.mkdir()
    me = process_identity(os.getpid()) or ""
    (dead / LOCK_FILE).write_text(me.rsplit("/", 2)[0] + "/999999999/1\n")
    assert claim(dead) == dead / LOCK_FILE
    # Another host's sweep cannot be checked from here: refused, with the way out named.
    other = tmp_path / "c"
    other.mkdir()
    (other / LOCK_FILE).write_text("elsewhere/boot/123/456\n")
    with pytest.raises(ConfigError, match=r"on host elsewhere.*or delete"):
        claim(other)


@pytest.mark.fault("two sweeps given the same hydra.sweep.dir at once",
                   "the second refused before any work (exit 2, the folder named); the first "
                   "files its jobs under its own parent")
def test_two_sweeps_in_one_folder(tmp_path: Path, row: Row) -> None:
    db, cache = tmp_path / "mlruns" / "mlflow.db", tmp_path / "cache"
    first = start_sweep(["-m", "trt.precision=fp32,bf16", *FAST], tmp_path, db=db,
                        cache=cache, name="shared")
    deadline = time.monotonic() + 120
    while not (tmp_path / "shared" / LOCK_FILE).exists():
        assert first.proc.poll() is None, first.stderr[-3000:]
        assert time.monotonic() < deadline, "the first sweep never claimed its folder"
        time.sleep(0.2)
    second = start_sweep(["-m", "trt.precision=fp16", *FAST], tmp_path, db=db, cache=cache,
                         name="shared").wait(120)
    first.wait(300)
    assert second.proc.returncode == 2, second.stderr[-3000:]
    assert f"the sweep folder {tmp_path / 'shared'} (hydra.sweep.dir) is in use by another " \
           "sweep" in second.stderr
    assert "Launching" not in second.output
    assert first.proc.returncode == 0, first.stderr[-3000:]
    runs = first.runs()
    parents = [r for r in runs if r.data.tags.get(tag.KIND) == "sweep"]
    jobs = [r for r in runs if r.data.tags.get(tag.KIND) == "job"]
    assert len(parents) == 1 and len(jobs) == 2
    assert {j.data.tags[tag.PARENT_RUN] for j in jobs} == {parents[0].info.run_id}
    assert not (tmp_path / "shared" / LOCK_FILE).exists()  # given back at the end
    # The folder of an ended sweep is taken over: the same folder runs the next sweep.
    third = start_sweep(["-m", "trt.precision=fp16", *FAST], tmp_path, db=db, cache=cache,
                        name="shared").wait(300)
    assert third.proc.returncode == 0, third.stderr[-3000:]
    row.outcome("second sweep: exit 2 naming the folder, nothing launched; first: its 2 jobs "
                "under its own parent, exit 0; a later sweep in the folder ran (exit 0)")
    row.cleanup(assert_clean(first, second, third))
