"""``python -m sweep`` (one job) and ``python -m sweep -m trt.opt_level=0,5 ...`` (multirun)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweep import cli
from sweep.cli import ExitCode
from sweep.config import register

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
    result = job.run(cfg, workdir=Path(hc.runtime.output_dir),
                     sweep_dir=Path(hc.sweep.dir) if multirun else None,
                     job_num=hc.job.num if multirun else None)
    if not multirun and result.status != "FINISHED":
        # A single run has no sweep to go on with: exit non-zero so scripts notice.
        raise SystemExit(1)
    return result.objectives


def _jobs_run_here(launcher: DictConfig) -> bool:
    """Whether the launcher runs the jobs one after another in this process (Hydra's basic
    launcher, also under the Optuna sweeper), so a kept server lives as long as the sweep."""
    return str(launcher.get("_target_", "")).endswith(".BasicLauncher")


def entry() -> None:
    from sweep.server import close_kept
    from sweep.tracking.callback import close_open_parent

    def cleanup(code: ExitCode | None) -> None:
        try:
            if code == ExitCode.INTERRUPTED:
                close_open_parent("KILLED")  # the running job was marked KILLED
        finally:
            close_kept()  # the servers kept across the jobs go with the sweep
            close_open_parent("FAILED")  # a sweep that did not reach its end

    cli.exit_with(lambda: cli.guard(
        main, "trt-sweep", interrupted="interrupted; the running job was marked KILLED.",
        cleanup=cleanup))


if __name__ == "__main__":
    entry()
