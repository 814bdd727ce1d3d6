"""``python -m sweep.promote``: from a finished sweep to the engine in production.

Picks one job of a sweep (``sweep/promote/selection.py``: constraints, then one objective),
registers its engine as an MLflow model version with an alias, and installs it as a new
version of a Triton model repository (``sweep/promote/install.py``). ``--dry-run`` only
shows the choice; ``--rollback`` takes the newest installed version back out. The store
and the experiment are the sweep's own (``tracking.uri``, ``tracking.experiment``), read
with the sweep's config options: ``--config-dir DIR`` and overrides such as
``tracking.uri=...`` (sweep/loader.py).

Exit codes (``sweep/cli.py``): 0 done, 2 refused (a ``PromoteError``/``SweepError`` says
why), 1 a failure of MLflow itself, 130 interrupted. See docs/promote.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from sweep import cli, loader, units
from sweep.cli import ExitCode
from sweep.errors import ConfigError, SweepError
from sweep.promote.promote import make_console, promote, rollback

# MLflow's own alias rules, checked before anything is registered or installed.
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")

# --- command line ------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sweep.promote",
        description="Pick the best job of a finished sweep under constraints, register its "
                    "engine in MLflow with an alias, and install it into a Triton model "
                    "repository. Exit codes: 0 done, 2 refused, 1 MLflow failed.")
    p.add_argument("--tracking-uri",
                   help="the sweep's MLflow store (default: tracking.uri of the config, read "
                        "as the sweep reads it: sqlite:///mlruns/mlflow.db unless your config "
                        "or an override says otherwise)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--parent-run-id", help="the sweep's parent run")
    source.add_argument("--experiment",
                        help="take the latest FINISHED sweep of this experiment (default: "
                             "tracking.experiment of the config, trt-sweep)")
    p.add_argument("--objective", default="latency_p99_ms",
                   help="METRIC[:min|:max] to optimise (default: latency_p99_ms, lowest)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-wer-delta", default="0.5", metavar="POINTS",
                        help="WER may exceed the fp32 reference's by this many percentage "
                             "points (default: 0.5; a value under 0.05 reads like a fraction "
                             "and is refused unless written 0.01pt)")
    budget.add_argument("--max-wer", metavar="PERCENT",
                        help="absolute WER bound in percent instead (e.g. 12.5; under 1 is "
                             "refused as a likely fraction unless written 0.8%%)")
    p.add_argument("--min-streams-at-slo", type=int, metavar="N",
                   help="only engines that serve at least N calls within the latency SLO "
                        "(streams_at_slo: sweep with eval.capacity=true); as the objective: "
                        "--objective streams_at_slo:max")
    p.add_argument("--max-gpu-memory-mib", type=float, metavar="MIB",
                   help="only engines whose server held at most this much GPU memory while "
                        "serving (gpu_memory_used_bytes, measured on GPU hosts)")
    p.add_argument("--allow-precision-mismatch", action="store_true",
                   help="let an engine qualify whose layers do not run the precision its "
                        "flag set names (tag precision_mismatch; refused by default)")
    p.add_argument("--device", help="target device tag (default: the fp32 reference's)")
    p.add_argument("--builder-version",
                   help="target builder_version tag (default: the fp32 reference's)")
    p.add_argument("--dataset", help="only the jobs of this dataset (its name); needed when "
                                     "the sweep measured several. A dataset= override "
                                     "narrows the same way, by the dataset it loads")
    p.add_argument("--model", help="only the jobs of this model interface (the sweep's model "
                                   "group, e.g. demo_skip_preprocessor); a model= override "
                                   "narrows the same way")
    p.add_argument("--dry-run", action="store_true",
                   help="show the choice and every rejection; register and install nothing")
    p.add_argument("--name", help="registered model name (default: trt-sweep-<model>)")
    p.add_argument("--alias", default="champion", help="alias for the new version "
                   "(default: champion)")
    p.add_argument("--repository-root", type=Path,
                   help="production Triton model repository; without it, register only")
    p.add_argument("--model-name", help="Triton model name in the repository (default: the "
                                        "sweep's model, e.g. demo_monolithic)")
    p.add_argument("--rollback", action="store_true",
                   help="remove the newest installed version of --model-name from "
                        "--repository-root and move the alias back")
    loader.add_config_options(p)
    args = p.parse_intermixed_args(argv)
    if args.rollback and not (args.repository_root and args.model_name):
        p.error("--rollback needs --repository-root and --model-name")
    # One unit everywhere (sweep/units.py): a budget that looks like a fraction is refused
    # with both readings, before any store is opened.
    try:
        args.max_wer_delta = units.parse_delta_points("--max-wer-delta", args.max_wer_delta)
        if args.max_wer is not None:
            args.max_wer = units.parse_absolute_percent("--max-wer", args.max_wer)
    except ConfigError as exc:
        p.error(str(exc))
    # MLflow's own alias rules, checked before anything is registered or installed.
    if not _ALIAS.match(args.alias) or args.alias.lower() == "latest" or \
            re.fullmatch(r"[vV]\d+", args.alias):
        p.error(f"--alias {args.alias!r}: use letters, digits, '_' and '-'; 'latest' and "
                "v<number> are reserved by MLflow")
    return args


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The store, the experiment and the jobs to choose from, read from the configuration
    the sweep ran with (sweep/loader.py): an explicit flag wins; a ``model=``/``dataset=``
    override narrows the jobs to what it loads, as ``--model``/``--dataset`` do."""
    options = loader.ConfigOptions.from_args(args)
    settings = loader.load(options, "promote")
    tracking = settings.tracking
    return argparse.Namespace(**{
        **vars(args),
        "tracking_uri": loader.tracking_uri(tracking, args.tracking_uri),
        "experiment": args.experiment or tracking.experiment,
        "dataset": args.dataset or (settings.dataset.name if options.chosen("dataset")
                                    else None),
        "model": args.model or (settings.model_config.name if options.chosen("model")
                                else None)})


def main(argv: Sequence[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from sweep.tracking.store import redact

    args = parse_args(argv)
    # MLflow's download progress bars would bury the promotion's own output in logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    console = make_console()

    def body() -> ExitCode:
        nonlocal args
        args = resolve(args)
        try:
            if args.rollback:
                rollback(console, args.tracking_uri, args.repository_root, args.model_name,
                         args.alias)
            else:
                promote(args, console)
        except MlflowException as exc:
            print(f"promote failed: MLflow: {redact(exc.message)}", file=sys.stderr)
            return ExitCode.MLFLOW_FAILED
        return ExitCode.OK

    def refused(exc: SweepError) -> None:
        Console(stderr=True, soft_wrap=True, highlight=False).print(
            Text("promote refused: ", style="bold red") + Text(str(exc)))

    return cli.guard(body, "promote", refused=refused)
