"""Exit codes a script can trust (sweep/cli.py): the codes, how a command's end maps onto
them, and a multirun's outcome read from its child runs (real SQLite store)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep import cli
from sweep.cli import ExitCode
from sweep.errors import ConfigError, PromoteError
from sweep.tracking import tags as tag
from sweep.tracking.store import open_store


def test_documented_codes():
    assert [int(c) for c in (ExitCode.OK, ExitCode.DIFFERS, ExitCode.REFUSED,
                             ExitCode.SOME_JOBS_FAILED, ExitCode.ALL_JOBS_FAILED,
                             ExitCode.INTERRUPTED)] == [0, 1, 2, 3, 4, 130]
    assert ExitCode.MLFLOW_FAILED == 1  # promote's, unchanged


@pytest.mark.parametrize(("statuses", "code", "line"), [
    (["FINISHED", "FINISHED"], ExitCode.OK, None),
    (["FINISHED", "FAILED"], ExitCode.SOME_JOBS_FAILED,
     "1 of 2 jobs FAILED (see the table above / their runs' error tag)"),
    (["FAILED", "FAILED"], ExitCode.ALL_JOBS_FAILED,
     "2 of 2 jobs FAILED (see the table above / their runs' error tag)"),
    (["FAILED", "FINISHED", "RUNNING"], ExitCode.SOME_JOBS_FAILED,
     "2 of 3 jobs did not finish (1 FAILED, 1 RUNNING) (see the table above / their runs' "
     "error tag)"),
    ([], ExitCode.ALL_JOBS_FAILED,
     "no job of the sweep left a run in the tracking store (see the messages above)"),
])
def test_jobs_outcome(statuses, code, line):
    assert cli.jobs_outcome(statuses) == (code, line)


def test_a_failed_single_run_is_all_jobs_failed():
    assert cli.jobs_outcome(["FAILED"], single=True) == (
        ExitCode.ALL_JOBS_FAILED, "the job FAILED (see the message above / its run's error tag)")
    assert cli.jobs_outcome(["FINISHED"], single=True) == (ExitCode.OK, None)


class Seen:
    def __init__(self) -> None:
        self.events: list[object] = []

    def cleanup(self, code: ExitCode | None) -> None:
        self.events.append(("cleanup", code))


def test_guard_maps_how_a_command_ended(capsys):
    seen = Seen()
    assert cli.guard(lambda: None, "tool", cleanup=seen.cleanup) == 0
    assert cli.guard(lambda: ExitCode.DIFFERS, "tool", cleanup=seen.cleanup) == 1

    def refused() -> None:
        raise ConfigError("bad value; use another")

    assert cli.guard(refused, "tool", cleanup=seen.cleanup) == 2
    assert capsys.readouterr().err == "tool: bad value; use another\n"

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert cli.guard(interrupted, "tool", interrupted="stopped; marked KILLED.",
                     cleanup=seen.cleanup) == 130
    assert capsys.readouterr().err == "tool: stopped; marked KILLED.\n"
    assert seen.events == [("cleanup", ExitCode.OK), ("cleanup", ExitCode.DIFFERS),
                           ("cleanup", ExitCode.REFUSED), ("cleanup", ExitCode.INTERRUPTED)]


def test_an_exit_is_printed_last_after_the_cleanup(capsys):
    def body() -> None:
        raise cli.Exit(ExitCode.SOME_JOBS_FAILED, "1 of 2 jobs FAILED")

    def cleanup(code: ExitCode | None) -> None:
        print("cleaning up", file=sys.stderr)

    assert cli.guard(body, "trt-sweep", cleanup=cleanup) == 3
    assert capsys.readouterr().err.splitlines() == ["cleaning up",
                                                    "trt-sweep: 1 of 2 jobs FAILED"]
    # An Exit nobody catches still exits with its code (it is a SystemExit).
    with pytest.raises(SystemExit) as exc:
        raise cli.Exit(ExitCode.ALL_JOBS_FAILED)
    assert exc.value.code == 4


def test_guard_uses_the_commands_own_refusal_printer(capsys):
    said = []

    def body() -> None:
        raise PromoteError("nothing qualifies")

    assert cli.guard(body, "promote", refused=lambda exc: said.append(str(exc))) == 2
    assert said == ["nothing qualifies"] and capsys.readouterr().err == ""


def test_other_exceptions_pass_through_after_the_cleanup():
    seen = Seen()

    def crash() -> None:
        raise RuntimeError("bug")

    def usage() -> None:  # argparse's or Hydra's own exit
        raise SystemExit(2)

    with pytest.raises(RuntimeError):
        cli.guard(crash, "tool", cleanup=seen.cleanup)
    with pytest.raises(SystemExit):
        cli.guard(usage, "tool", cleanup=seen.cleanup)
    assert seen.events == [("cleanup", None), ("cleanup", None)]


def test_sigterm_ends_a_command_as_ctrl_c_does(capsys):
    def body() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # interrupted well before

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.exit_with(lambda: cli.guard(body, "tool"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exc.value.code == 130
    assert capsys.readouterr().err == "tool: interrupted\n"


def test_multirun_outcome_counts_the_parents_child_runs(tmp_path: Path, monkeypatch):
    """The statuses come from the store, as a Ray worker's job would leave them: nothing of
    the jobs ran in this process."""
    import sweep.__main__ as entry
    from sweep.tracking.callback import ParentRunCallback

    store = open_store(f"sqlite:///{tmp_path}/mlflow.db", "exit-codes",
                       str(tmp_path / "artifacts"), tmp_path)
    client = MlflowClient(store.uri)

    def sweep(*statuses: str) -> str:
        parent = client.create_run(store.experiment_id, tags={tag.KIND: "sweep"})
        for status in statuses:
            run = client.create_run(store.experiment_id, tags={
                tag.KIND: "job", tag.PARENT_RUN: parent.info.run_id})
            client.set_terminated(run.info.run_id, status)
        client.set_terminated(parent.info.run_id, "FINISHED")
        return parent.info.run_id

    expected = {("FINISHED", "FINISHED"): None,
                ("FINISHED", "FAILED"): ExitCode.SOME_JOBS_FAILED,
                ("FAILED", "FAILED"): ExitCode.ALL_JOBS_FAILED}
    for statuses, code in expected.items():
        monkeypatch.setattr(ParentRunCallback, "closed", (store, sweep(*statuses)))
        if code is None:
            entry.multirun_outcome()
        else:
            with pytest.raises(cli.Exit) as exc:
                entry.multirun_outcome()
            assert exc.value.exit_code == code
        assert ParentRunCallback.closed is None  # read once
    entry.multirun_outcome()  # no multirun ran here (a single run, --help): nothing to say
