"""``python -m sweep.preflight [--config-dir DIR] [-m] [OVERRIDES...]``: the checks a sweep
with the same options would meet, one line each, before its first job: the host (local
tritonserver, Docker, images, GPUs), the flag sets, the model (file, tensors, chunk, one
zero chunk through ONNX Runtime), the test set (every manifest line, every audio file),
the calibration set and ModelOpt for flag sets realised in the graph, the KenLM of a beam
decoder. Exit 0 when a sweep would start and its inputs are sound, 2
(``ExitCode.REFUSED``) when not.

    python -m sweep.preflight builder=trtexec server=docker
    python -m sweep.preflight -m trt.strongly_typed=true trt.precision=fp16,int8
    python -m sweep.preflight --config-dir ~/tone-conf model=tone dataset=calls

Sweep overrides (``a,b``, ``range(...)``) are expanded as the sweep expands them: every
job's model, test set and flag set is checked. ``--config-dir`` (``-cd``) and
``hydra.searchpath=[...]`` add a folder of your own ``model/`` and ``dataset/`` yaml, as
they do for ``python -m sweep``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from sweep.cli import ExitCode
from sweep.errors import ConfigError, SweepError
from sweep.preflight.checks import Check, run_checks

# A sweep of more jobs than this is checked on its first ones (each is one Hydra compose).
MAX_JOBS = 256


def _search_path(overrides: list[str], config_dir: str | None) -> list[str]:
    """``--config-dir`` as Hydra's search path override (merged with one given)."""
    if config_dir is None:
        return overrides
    folder = Path(config_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--config-dir {config_dir}: no such folder")
    entry = f"file://{folder}"
    out, merged = [], False
    for item in overrides:
        if item.startswith("hydra.searchpath="):
            inner = item.partition("=")[2].strip().removeprefix("[").removesuffix("]")
            out.append(f"hydra.searchpath=[{entry}{',' + inner if inner else ''}]")
            merged = True
        else:
            out.append(item)
    return out if merged else [f"hydra.searchpath=[{entry}]", *out]


def expand(overrides: list[str]) -> list[list[str]]:
    """One override list per job of the sweep these overrides describe (Hydra's basic
    sweeper: the cartesian product of every sweep override's values)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: list[list[str]] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            choices.append([override.input_line or ""])
            continue
        if override.is_interval_sweep():
            raise ConfigError(f"{override.input_line}: an interval is sampled by the Optuna "
                              "sweeper; preflight checks listed values (a,b) and range()")
        key = override.get_key_element()
        choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    return [list(job) for job in itertools.islice(itertools.product(*choices), MAX_JOBS)]


def compose(overrides: list[str], config_name: str = "config") -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    register()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3",
                               job_name="preflight"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def report(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.ok]
    lines = [c.line() for c in checks]
    lines.append(f"preflight: {len(checks) - len(failed)} of {len(checks)} checks passed"
                 + ("; a sweep with these settings would fail." if failed else "."))
    return "\n".join(lines)


def collect(overrides: list[str], config_dir: str | None = None,
            config_name: str = "config", inputs: bool = True) -> list[Check]:
    """Every check of the sweep these options describe: the host's for each distinct
    builder and server, then the inputs of every job."""
    from sweep.config import gpu_host_settings
    from sweep.preflight.inputs import input_checks

    cfgs = [compose(job, config_name) for job in expand(_search_path(overrides, config_dir))]
    checks: list[Check] = []
    hosts: set[str] = set()
    for cfg in cfgs:
        builder, server = gpu_host_settings(cfg)
        if repr((builder, server)) not in hosts:
            hosts.add(repr((builder, server)))
            checks += [c for c in run_checks(builder, server) if c not in checks]
    if inputs:
        checks += input_checks(cfgs)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.preflight",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the sweep's Hydra overrides")
    parser.add_argument("--config-dir", "-cd", metavar="DIR",
                        help="a folder of your own config groups (model/, dataset/...), "
                             "as for python -m sweep")
    parser.add_argument("--config-name", "-cn", default="config", metavar="NAME",
                        help="the primary config (default %(default)s)")
    parser.add_argument("--multirun", "-m", action="store_true",
                        help="accepted so a sweep's command line can be checked as is; "
                             "sweep overrides are expanded either way")
    parser.add_argument("--host-only", action="store_true",
                        help="check the host only (not the model, data and flag sets)")
    args = parser.parse_intermixed_args(argv)
    from hydra.errors import HydraException

    try:
        checks = collect(args.overrides, args.config_dir, args.config_name,
                         inputs=not args.host_only)
    except (HydraException, SweepError) as exc:  # an override Hydra cannot apply, ...
        print(f"preflight: {exc}", file=sys.stderr)
        return ExitCode.REFUSED
    print(report(checks))
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.REFUSED
