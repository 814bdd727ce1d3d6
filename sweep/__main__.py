"""``python -m sweep`` (one job) and ``python -m sweep -m trt.opt_level=0,5 ...`` (multirun)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweep.config import JobSettings, register
from sweep.errors import SweepError

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
    result = job.run(JobSettings.from_cfg(cfg), workdir=Path(hc.runtime.output_dir),
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: the running job ends KILLED, its server is
    # stopped by the context managers, and the parent run is closed below. Re-raised as
    # SIGINT so that whoever handles Ctrl-C now handles it: asyncio.run cancels the
    # evaluation's task, elsewhere Python raises KeyboardInterrupt. Raising it here directly
    # can land inside a grpc aio callback, which swallows it ("Exception ignored in
    # CallbackWrapper.functor_run") and leaves the event loop waiting forever.
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)
    else:  # SIGINT ignored (a background job of a script): nobody would act on it
        raise KeyboardInterrupt(f"signal {signum}")


def entry() -> None:
    from sweep.server import close_kept
    from sweep.tracking.callback import close_open_parent

    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except KeyboardInterrupt:
        close_open_parent("KILLED")
        print("trt-sweep: interrupted; the running job was marked KILLED.", file=sys.stderr)
        raise SystemExit(130) from None
    except SweepError as exc:
        close_open_parent("FAILED")
        print(f"trt-sweep: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        close_kept()  # the servers kept across the jobs go with the sweep
        close_open_parent("FAILED")


if __name__ == "__main__":
    entry()
