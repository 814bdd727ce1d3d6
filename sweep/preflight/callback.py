"""The preflight checks before a sweep's first job (a Hydra callback, registered in
conf/config.yaml before the parent run is opened)."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sweep.cli import ExitCode


class PreflightCallback(Callback):
    """Stops a sweep whose host cannot run it, before any job and any MLflow run: a GPU
    host without the NVIDIA runtime, an image that is not there, a Docker daemon that
    does not answer. ``python -m sweep.preflight`` prints the same checks."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check(config)


def _check(config: DictConfig) -> None:
    from sweep.config import gpu_host_settings, multihost_paths
    from sweep.preflight.checks import run_checks
    from sweep.preflight.paths import RelativePathError, check_multihost

    paths = multihost_paths(config)
    if paths is not None:
        try:
            check_multihost(paths)
        except RelativePathError as exc:
            print(f"trt-sweep: {exc}", file=sys.stderr)
            raise SystemExit(int(ExitCode.REFUSED)) from None

    failed = [c for c in run_checks(*gpu_host_settings(config)) if not c.ok]
    if not failed:
        return
    for check in failed:
        print(f"trt-sweep: preflight: {check.line()}", file=sys.stderr)
    print(f"trt-sweep: {len(failed)} preflight check(s) failed; no job was started "
          "(`python -m sweep.preflight` with the same overrides shows every check).",
          file=sys.stderr)
    # Hydra turns a callback's exception into a warning and launches the jobs anyway;
    # SystemExit is not an Exception, so it passes Hydra's handler.
    raise SystemExit(int(ExitCode.REFUSED))
