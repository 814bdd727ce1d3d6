"""Launching a sweep's jobs on a Ray cluster where a host may die.

hydra-ray-launcher 1.2.2 collects its jobs with ``[ray.get(ref) for ref in refs]``: a job
whose worker died after Ray's retries (``remote.max_retries``) raises there, and the
sweep ends with a traceback while its other jobs are still running. Here each job is
collected on its own: a lost job is reported, its objectives are (inf, inf) (a sweeper
ranks it last), and its run, left RUNNING by the dead worker, ends FAILED at the sweep's
end with Ray's reason (``sweep.tracking.runs.LOST_JOBS``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep.tracking.runs import LOST_JOBS


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[Any]:
    import ray
    from hydra.core.singleton import Singleton
    from hydra.core.utils import (
        JobReturn,
        JobStatus,
        configure_log,
        filter_overrides,
        setup_globals,
    )
    from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray
    from omegaconf import open_dict

    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    print(f"trt-sweep: launching {len(job_overrides)} jobs on the Ray cluster, sweep folder "
          f"{sweep_dir}", file=sys.stderr, flush=True)
    start_ray(launcher.ray_cfg.init)
    launched = []
    for offset, overrides in enumerate(job_overrides):
        idx = initial_job_idx + offset
        config = launcher.hydra_context.config_loader.load_sweep_config(
            launcher.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = f"job_id_for_{idx}"
            config.hydra.job.num = idx
        print(f"trt-sweep: \t#{idx} : {' '.join(filter_overrides(overrides))}",
              file=sys.stderr, flush=True)
        ref = launch_job_on_ray(launcher.hydra_context, launcher.ray_cfg.remote, config,
                                launcher.task_function, Singleton.get_state())
        launched.append((idx, list(overrides), config, ref))
    returns = []
    for idx, overrides, config, ref in launched:
        try:
            returns.append(ray.get(ref))
        except ray.exceptions.RayError as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            LOST_JOBS[str(idx)] = reason
            print(f"trt-sweep: job #{idx} was lost with its Ray worker ({reason}); the "
                  "sweep goes on", file=sys.stderr, flush=True)
            returns.append(JobReturn(overrides=overrides, cfg=config,
                                     status=JobStatus.COMPLETED,
                                     _return_value=(math.inf, math.inf)))
    return returns
