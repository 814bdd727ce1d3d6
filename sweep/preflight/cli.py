"""``python -m sweep.preflight [OVERRIDES...]``: the checks a sweep with the same overrides
runs before its first job, one line each; exit 0 when a sweep would start, 2
(``ExitCode.REFUSED``) when not.

    python -m sweep.preflight builder=trtexec server=docker
    python -m sweep.preflight builder=trtexec server=docker server.gpus=all
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sweep.cli import ExitCode
from sweep.errors import SweepError
from sweep.preflight.checks import Check, run_checks


def _compose(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    register()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3",
                               job_name="preflight"):
        return compose(config_name="config", overrides=overrides)


def report(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.ok]
    lines = [c.line() for c in checks]
    lines.append(f"preflight: {len(checks) - len(failed)} of {len(checks)} checks passed"
                 + ("; a sweep with these settings would fail." if failed else "."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.preflight",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="the sweep's Hydra overrides")
    args = parser.parse_args(argv)
    from hydra.errors import HydraException

    from sweep.config import gpu_host_settings

    try:
        builder, server = gpu_host_settings(_compose(args.overrides))
        checks = run_checks(builder, server)
    except (HydraException, SweepError) as exc:  # an override Hydra cannot apply, ...
        print(f"preflight: {exc}", file=sys.stderr)
        return ExitCode.REFUSED
    print(report(checks))
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.REFUSED
