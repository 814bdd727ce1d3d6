"""``python -m sweep`` (one job) and ``python -m sweep -m trt.opt_level=0,5 ...`` (multirun).

Exit codes (``sweep/cli.py``): 0 every job FINISHED; 3 some jobs FAILED; 4 no job FINISHED
(a single run that failed too); 2 refused (a ``SweepError``: the store, the config);
130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweep import cli
from sweep.cli import ExitCode
from sweep.config import JobSettings, register
from sweep.errors import SweepError, TrackingError

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> tuple[float, float]:
    from sweep import job

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if cfg.server.keep_running and not _jobs_run_here(hc.launcher):
        # A launcher that runs jobs in worker processes (Ray) may end them without running
        # their exit handlers: a server kept there would outlive the sweep.
        cfg.server.keep_running = False
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    try:
        result = job.run(JobSettings.from_cfg(cfg), workdir=Path(hc.runtime.output_dir),
                         sweep_dir=sweep_dir, job_num=hc.job.num if multirun else None,
                         sweep_key=_sweep_key(sweep_dir, list(hc.overrides.task)))
    except SweepError as exc:  # before the job's run exists: the store cannot be used
        if multirun:
            raise
        # Hydra would print it as a traceback and exit 1; a single run refuses as every
        # command does. (A multirun's store was checked by its parent-run callback.)
        raise cli.Exit(ExitCode.REFUSED, str(exc)) from None
    if not multirun and result.status != "FINISHED":
        # A single run has no sweep to go on with: exit non-zero so scripts notice.
        raise cli.Exit(*cli.jobs_outcome([result.status], single=True))
    return result.objectives


def _sweep_key(sweep_dir: Path | None, overrides: list[str]) -> str:
    """The sweep command this job belongs to: the multirun's, as its parent-run callback
    wrote it into the sweep folder; a single run's own overrides."""
    import json

    from sweep.events import SWEEP_FILE
    from sweep.tracking.resume import sweep_key

    if sweep_dir is not None:
        try:
            return str(json.loads((sweep_dir / SWEEP_FILE).read_text())["sweep_key"])
        except (OSError, ValueError, KeyError):
            pass  # a launcher that lost the file: the job's own overrides, as a single run
    return sweep_key(overrides)


def _jobs_run_here(launcher: DictConfig) -> bool:
    """Whether the launcher runs the jobs one after another in this process (Hydra's basic
    launcher, also under the Optuna sweeper), so a kept server lives as long as the sweep."""
    return str(launcher.get("_target_", "")).endswith(".BasicLauncher")


def multirun_outcome() -> None:
    """After a multirun: raise ``cli.Exit`` with SOME_JOBS_FAILED or ALL_JOBS_FAILED when
    jobs did not finish; nothing when all FINISHED, or when no multirun ran here.

    The jobs' statuses are read from the parent run's child runs in MLflow, not counted from
    the task function's returns in this process: a launcher that runs jobs in other
    processes (Ray, on this host or on others) runs the task function there, so this
    process never sees a job's result, while every job, wherever it runs, records its run
    under the parent in the sweep's store. With Hydra's basic launcher the runs are the same
    records, and the table printed at the end of the sweep is read from them too, so the
    count always agrees with that table."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking.callback import ParentRunCallback
    from sweep.tracking.records import sweep_records

    closed, ParentRunCallback.closed = ParentRunCallback.closed, None
    if closed is None:  # a single run (it raised its own outcome), or --help, --cfg ...
        return
    store, parent_id = closed
    try:
        statuses = [r.status for r in sweep_records(MlflowClient(store.uri), store.experiment_id,
                                                    parent_id, with_engine=False)]
    except Exception as exc:
        raise TrackingError(f"the sweep ended, but its jobs' statuses cannot be read from the "
                            f"tracking store ({type(exc).__name__}): check the runs of parent "
                            f"run {parent_id}.") from exc
    code, message = cli.jobs_outcome(statuses)
    if code != ExitCode.OK:
        raise cli.Exit(code, message)


def entry() -> None:
    import logging

    from sweep.server import close_kept

    # MLflow's SQL store logs every database error it catches with a traceback, then raises
    # it: the sweep reports what it raised, once (a store that stopped accepting writes
    # would otherwise print a traceback for each of the job's writes).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    from sweep.tracking.callback import close_open_parent

    def sweep() -> None:
        main()
        multirun_outcome()

    def cleanup(code: ExitCode | None) -> None:
        try:
            if code == ExitCode.INTERRUPTED:
                close_open_parent("KILLED")  # the running job was marked KILLED
        finally:
            close_kept()  # the servers kept across the jobs go with the sweep
            close_open_parent("FAILED")  # a sweep that did not reach its end

    cli.exit_with(lambda: cli.guard(
        sweep, "trt-sweep", interrupted="interrupted; the running job was marked KILLED.",
        cleanup=cleanup))


if __name__ == "__main__":
    entry()
