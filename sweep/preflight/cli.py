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
they do for ``python -m sweep`` (the configuration is read by sweep/loader.py, as every
tool reads it).
"""

from __future__ import annotations

import argparse
import sys

from sweep import loader
from sweep.cli import ExitCode
from sweep.errors import SweepError
from sweep.loader import ConfigOptions
from sweep.preflight.checks import Check, run_checks

__all__ = ["collect", "main", "report"]


def report(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.ok]
    lines = [c.line() for c in checks]
    lines.append(f"preflight: {len(checks) - len(failed)} of {len(checks)} checks passed"
                 + ("; a sweep with these settings would fail." if failed else "."))
    return "\n".join(lines)


def collect(options: ConfigOptions, inputs: bool = True) -> list[Check]:
    """Every check of the sweep these options describe: the host's for each distinct
    builder and server, then the inputs of every job."""
    from sweep.config import gpu_host_settings
    from sweep.preflight.inputs import input_checks

    cfgs = loader.compose_jobs(options, job_name="preflight")
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
    loader.add_config_options(parser, multirun=True)
    parser.add_argument("--host-only", action="store_true",
                        help="check the host only (not the model, data and flag sets)")
    args = parser.parse_intermixed_args(argv)
    try:
        checks = collect(ConfigOptions.from_args(args), inputs=not args.host_only)
    except SweepError as exc:  # an override Hydra cannot apply, a missing --config-dir...
        from sweep.tracking.store import redact

        print(f"preflight: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.REFUSED
    print(report(checks))
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.REFUSED
