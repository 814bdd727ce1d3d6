"""One sink for what a job reports to a person: which job of how many, each long phase with
its elapsed time, results and failures.

On a terminal a phase is a live bar (rich); elsewhere (CI, nohup, a Ray worker's log) it is
a line when it starts and one when it ends, with the seconds it took, so a log shows where a
job is and where its time went. The phases' durations are kept (``Events.seconds``) for
whoever times them (bench/). Stages never print: the job hands them this sink.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

# What the sweep's parent-run callback writes into the sweep folder for its jobs, wherever
# they run: the number of jobs and when the sweep started (for "job 3 of 8, ~4 min left").
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Position:
    """Which job of the sweep this is (1-based) and of how many; ``started``: the sweep's
    start (epoch seconds), for an estimate of the time left."""

    number: int
    total: int | None = None
    started: float | None = None

    def describe(self, now: float | None = None) -> str:
        text = f"job {self.number}" + (f"/{self.total}" if self.total else "")
        done = self.number - 1
        if self.total and self.started is not None and done > 0:
            per_job = ((now or time.time()) - self.started) / done
            left = per_job * (self.total - done)
            text += f", ~{_duration(left)} left"
        return text

    @classmethod
    def read(cls, sweep_dir: Path | None, job_num: int | None) -> Position | None:
        """From the sweep folder's ``sweep.json`` (None for a single run)."""
        if sweep_dir is None or job_num is None:
            return None
        total = started = None
        try:
            info = json.loads((sweep_dir / SWEEP_FILE).read_text())
            total = int(info["jobs"]) if info.get("jobs") else None
            started = float(info["started"]) if info.get("started") else None
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return cls(job_num + 1, total, started)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Phase:
    """A running phase: ``advance()`` moves its bar (or, off a terminal, nothing)."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@dataclass
class Events:
    """Where a job's progress goes. ``label``: the flag set; ``position``: job n of N."""

    label: str = ""
    position: Position | None = None
    console: Console = field(default_factory=lambda: Console(stderr=True))
    live: bool | None = None  # None: live bars on a terminal only
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = self.console.is_terminal
        # Estimated once, when the job starts: the time left at its start.
        self._where = f" ({self.position.describe()})" if self.position else ""

    def _prefix(self) -> str:
        return f"{self.label}{self._where}"

    def line(self, style: str, message: str, label: str | None = None) -> None:
        """One unwrapped line (error messages stay greppable); the message is printed
        verbatim, never parsed as rich markup."""
        head = label if label is not None else self._prefix()
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [{style}]{head}[/]", end=" ",
                           soft_wrap=True, markup=True, highlight=False)
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    @contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[Phase]:
        """A long phase: a live bar (with ``total`` steps) or a spinner on a terminal; a
        start line and an end line with the elapsed time elsewhere. The end line says
        FAILED when the phase raised."""
        t0 = time.perf_counter()
        if self.live:
            columns = [SpinnerColumn(), TextColumn(f"[bold]{self._prefix()}[/] {name}")]
            if total is not None:
                columns += [BarColumn(), MofNCompleteColumn()]
            with Progress(*columns, TimeElapsedColumn(), console=self.console,
                          transient=True) as progress:
                task = progress.add_task(name, total=total)
                yield Phase(progress, task)
            self.seconds[name] = time.perf_counter() - t0
            self.line("dim", f"{name}: done in {self.seconds[name]:.1f} s")
            return
        self.line("bold", f"{name}: started" + (f" ({total} steps)" if total else ""))
        phase = Phase(None, None)
        try:
            yield phase
        except BaseException:
            self.line("red", f"{name}: FAILED after {time.perf_counter() - t0:.1f} s")
            raise
        self.seconds[name] = time.perf_counter() - t0
        steps = f", {phase.done}/{total}" if total else ""
        self.line("dim", f"{name}: done in {self.seconds[name]:.1f} s{steps}")
