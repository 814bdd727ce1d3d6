"""Exit codes and the one way every ``python -m sweep*`` command ends.

| code | name | meaning |
|---|---|---|
| 0 | ``OK`` | done (doctor: the served pipeline matches the reference) |
| 1 | ``DIFFERS`` | doctor: the served pipeline differs from the reference (the report says why) |
| 1 | ``MLFLOW_FAILED`` | promote: MLflow itself failed (also Python's own status for a crash) |
| 2 | ``REFUSED`` | a ``SweepError``: bad input or configuration, nothing (or not all) could run |
| 3 | ``SOME_JOBS_FAILED`` | sweep: some jobs FAILED, the others FINISHED |
| 4 | ``ALL_JOBS_FAILED`` | sweep: no job FINISHED (also: a single run that failed) |
| 130 | ``INTERRUPTED`` | Ctrl-C or SIGTERM; what was running is marked KILLED |

Command-line mistakes exit 2 with argparse's or Hydra's usage message; an override Hydra
cannot apply to the config (an unknown key, a wrong type) exits 1, Hydra's own code.
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from enum import IntEnum
from types import FrameType
from typing import NoReturn

from sweep.errors import SweepError


class ExitCode(IntEnum):
    OK = 0
    DIFFERS = 1
    # An alias of 1: promote's other failure; a command never means both.
    MLFLOW_FAILED = 1
    REFUSED = 2
    SOME_JOBS_FAILED = 3
    ALL_JOBS_FAILED = 4
    INTERRUPTED = 130


class Exit(SystemExit):
    """Ends a command with ``code``; ``message`` is printed last (stderr, the command's
    prefix), after its clean-up. A SystemExit, so that it also passes Hydra's handler (which
    catches ``Exception``) when raised from a task function."""

    def __init__(self, code: ExitCode, message: str | None = None) -> None:
        super().__init__(int(code))
        self.exit_code = code
        self.message = message


def jobs_outcome(statuses: Sequence[str], *, single: bool = False
                 ) -> tuple[ExitCode, str | None]:
    """The exit code of a sweep whose jobs ended with ``statuses`` (MLflow run statuses),
    and the line that says so (None when every job FINISHED)."""
    total = len(statuses)
    if total == 0:
        # Hydra launches at least one job: none left a run, so none could be recorded.
        return ExitCode.ALL_JOBS_FAILED, ("no job of the sweep left a run in the tracking "
                                          "store (see the messages above)")
    unfinished = Counter(s for s in statuses if s != "FINISHED")
    failed = sum(unfinished.values())
    if not failed:
        return ExitCode.OK, None
    code = ExitCode.ALL_JOBS_FAILED if failed == total else ExitCode.SOME_JOBS_FAILED
    if single:
        return code, f"the job {statuses[0]} (see the message above / its run's error tag)"
    how = "FAILED" if set(unfinished) == {"FAILED"} else "did not finish (" + ", ".join(
        f"{n} {status}" for status, n in sorted(unfinished.items())) + ")"
    return code, (f"{failed} of {total} jobs {how} (see the table above / their runs' error "
                  "tag)")


def guard(body: Callable[[], int | None], prog: str, *, interrupted: str = "interrupted",
          refused: Callable[[SweepError], None] | None = None,
          cleanup: Callable[[ExitCode | None], None] | None = None) -> int:
    """Run a command's ``body`` and turn how it ended into an exit code and one message:

    - returns normally: its code (None: ``OK``);
    - ``Exit``: its code and message;
    - ``SweepError``: ``REFUSED``, ``"<prog>: <message>"`` (or ``refused(exc)``);
    - ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM through ``exit_with``): ``INTERRUPTED``,
      ``"<prog>: <interrupted>"``.

    ``cleanup(code)`` runs before the message is printed, whatever happened (None: another
    exception, or a SystemExit of Hydra's or argparse's, is passing through)."""
    code: ExitCode | None = None
    message: str | None = None
    error: SweepError | None = None
    try:
        returned = body()
        code = ExitCode.OK if returned is None else ExitCode(returned)
    except Exit as exc:
        code, message = exc.exit_code, exc.message
    except KeyboardInterrupt:
        code, message = ExitCode.INTERRUPTED, interrupted
    except SweepError as exc:
        code, error = ExitCode.REFUSED, exc
    finally:
        if cleanup is not None:
            cleanup(code)
    if error is not None and refused is not None:
        refused(error)
    elif error is not None:
        message = str(error)
    if message:
        from sweep.tracking.store import redact  # an error may quote a URI with its password

        print(f"{prog}: {redact(message)}", file=sys.stderr, flush=True)
    assert code is not None  # None only while another exception passes through
    return int(code)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: what runs ends KILLED, servers are stopped by
    # their context managers, MLflow runs are closed. Re-raised as SIGINT so that whoever
    # handles Ctrl-C now handles it: asyncio.run cancels an evaluation's task, elsewhere
    # Python raises KeyboardInterrupt. Raising it here directly can land inside a grpc aio
    # callback, which swallows it ("Exception ignored in CallbackWrapper.functor_run") and
    # leaves the event loop waiting forever.
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)
    else:  # SIGINT ignored (a background job of a script): nobody would act on it
        raise KeyboardInterrupt(f"signal {signum}")


def exit_with(main: Callable[[], int]) -> NoReturn:
    """A ``python -m`` entry point: SIGTERM handled as Ctrl-C, then ``main``'s code."""
    signal.signal(signal.SIGTERM, _terminate)
    raise SystemExit(int(main()))
