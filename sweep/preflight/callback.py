"""The preflight checks before a sweep's first job (a Hydra callback, registered in
conf/config.yaml before the parent run is opened)."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweep.cli import ExitCode


class PreflightCallback(Callback):
    """Stops a sweep before any job and any MLflow run when it cannot succeed: a host that
    cannot run it (a GPU host without the NVIDIA runtime, an image that is not there, a
    Docker daemon that does not answer) or inputs that every job would fail on (an ONNX
    that is missing or not as its model yaml declares, a bad manifest line or audio file, a
    missing calibration set, a flag set TensorRT would reject). Each failed check is
    printed once, however many jobs share it. ``python -m sweep.preflight`` prints the same
    checks."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, single=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config, single=False)


def _check(config: DictConfig, single: bool) -> None:
    from hydra.errors import HydraException

    from sweep.config import gpu_host_settings, multihost_paths
    from sweep.errors import SweepError
    from sweep.preflight.checks import run_checks
    from sweep.preflight.inputs import input_checks
    from sweep.preflight.jobs import job_configs
    from sweep.preflight.paths import RelativePathError, check_multihost

    paths = multihost_paths(config)
    if paths is not None:
        try:
            check_multihost(paths)
        except RelativePathError as exc:
            print(f"trt-sweep: {exc}", file=sys.stderr)
            raise SystemExit(int(ExitCode.REFUSED)) from None

    failed = [c for c in run_checks(*gpu_host_settings(config)) if not c.ok]
    # A single run's config is its job's; a multirun's jobs are composed here, as its
    # launcher will compose them. Checks are made once per distinct model, dataset, ...
    try:
        jobs = [config] if single else job_configs(config)
        failed += [c for c in input_checks(jobs) if not c.ok]
    except (HydraException, SweepError) as exc:  # a job's config cannot even be composed
        print(f"trt-sweep: preflight: {exc}", file=sys.stderr)
        raise SystemExit(int(ExitCode.REFUSED)) from None
    if not failed:
        return
    for check in failed:
        print(f"trt-sweep: preflight: {check.line()}", file=sys.stderr)
    what = "the run" if single else f"the {len(jobs)} job(s) of the sweep"
    print(f"trt-sweep: {len(failed)} preflight check(s) failed for {what}; no job was "
          "started (`python -m sweep.preflight` with the same overrides shows every check).",
          file=sys.stderr)
    # Hydra turns a callback's exception into a warning and launches the jobs anyway;
    # SystemExit is not an Exception, so it passes Hydra's handler.
    raise SystemExit(int(ExitCode.REFUSED))
