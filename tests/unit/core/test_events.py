"""The progress sink (sweep/events.py): off a terminal, a start and an end line per phase
with its seconds and the job's place in the sweep; a failed phase says so."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from sweep.events import SWEEP_FILE, Events, Position


def _events(label: str = "fp16-o3", position: Position | None = None) -> tuple[Events, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return Events(label, position, console), out


def test_a_phase_off_a_terminal_is_two_lines_with_its_seconds_and_steps():
    events, out = _events(position=Position(3, 8))
    with events.phase("streaming the test set", total=4) as bar:
        for _ in range(4):
            bar.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("fp16-o3 (job 3/8) streaming the test set: started (4 steps)")
    assert "streaming the test set: done in " in lines[1] and lines[1].endswith(" s, 4/4")
    assert events.seconds["streaming the test set"] >= 0


def test_a_failed_phase_says_failed_and_the_error_passes():
    events, out = _events()
    with pytest.raises(RuntimeError), events.phase("build (emulate)"):
        raise RuntimeError("boom")
    assert "build (emulate): FAILED after" in out.getvalue()
    assert "build (emulate)" not in events.seconds


def test_the_time_left_is_the_mean_job_so_far_times_the_jobs_left():
    assert Position(1, 4, started=0.0).describe(now=100.0) == "job 1/4"  # nothing done yet
    assert Position(3, 4, started=0.0).describe(now=120.0) == "job 3/4, ~2 min left"
    assert Position(2, None).describe() == "job 2"


def test_the_position_is_read_from_the_sweep_folder(tmp_path: Path):
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"jobs": 6, "started": 10.0}))
    assert Position.read(tmp_path, 2) == Position(3, 6, 10.0)
    assert Position.read(None, 2) is None
    assert Position.read(tmp_path / "missing", 0) == Position(1, None, None)
