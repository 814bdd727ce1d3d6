"""The one loader: every tool reads the sweep's configuration as ``python -m sweep`` does.

``python -m sweep``, ``sweep.preflight``, ``sweep.precision_search``, ``sweep.doctor``,
``sweep.promote`` and ``sweep.serve`` take the same config options: ``--config-dir DIR``
(``-cd``: a folder of your own ``model/``, ``dataset/``, ``decoder/``, ``tracking/`` yaml
or primary config, searched after conf/ as Hydra's own ``--config-dir`` is),
``--config-name`` (``-cn``) and Hydra overrides (``model=tone dataset=calls
tracking.uri=...``). They are composed here
with Hydra's compose API on the structured configs of sweep/config.py: the same defaults
list, schemas and interpolations as a sweep job, so every tool reads the same model, test
set, decoder and tracking store. A tool's own flag that repeats a config value
(``--tracking-uri``, ``--onnx``) wins over the config.

The tracking store is ``tracking.uri`` only, as for the sweep (which sets MLflow's URI
itself): ``MLFLOW_TRACKING_URI`` is not read (``tracking_uri`` says so when it is set to
another store).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

    from sweep.config import JobSettings, TrackingConfig

DEFAULT_CONFIG = "config"
# A sweep of more jobs than this is loaded on its first ones (each is one Hydra compose).
MAX_JOBS = 256


@dataclass(frozen=True)
class ConfigOptions:
    """What a command line says about the configuration: the sweep's own options."""

    overrides: tuple[str, ...] = ()
    config_dir: str | None = None
    config_name: str = DEFAULT_CONFIG
    # (group, yaml file): a group option given as a file (``doctor --model x.yaml``).
    files: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConfigOptions:
        return cls(overrides=tuple(args.overrides or ()), config_dir=args.config_dir,
                   config_name=args.config_name or DEFAULT_CONFIG)

    def with_overrides(self, *overrides: str) -> ConfigOptions:
        """These options and more overrides (a tool's shorthand flags: ``--server docker``
        is ``server=docker``), which come last and so win."""
        return replace(self, overrides=(*self.overrides, *overrides))

    def with_file(self, group: str, path: Path) -> ConfigOptions:
        return replace(self, files=(*self.files, (group, path)))

    def touches(self, group: str) -> bool:
        """Whether an override chooses ``group`` or sets a key in it (``trt=x``,
        ``trt.tf32=false``)."""
        return any(o.get_key_element().lstrip("+~").split(".")[0] == group
                   for o in _parse(self.overrides))

    def chosen(self, group: str) -> str | None:
        """The option of ``group`` (or its ``name``) this command line names, if any:
        ``dataset=calls`` or ``dataset.name=calls`` -> ``calls``."""
        found = None
        for override in _parse(self.overrides):
            key = override.get_key_element().lstrip("+~")
            if key in (group, f"{group}.name") and not override.is_sweep_override():
                found = str(override.value())
        return found


def add_config_options(parser: argparse.ArgumentParser, *, multirun: bool = False) -> None:
    """``--config-dir``, ``--config-name`` and the positional Hydra overrides (and ``-m``
    where the tool takes a sweep's several jobs); parse with ``parse_intermixed_args`` so
    overrides may stand between the options."""
    group = parser.add_argument_group(
        "configuration (as python -m sweep: the model, test set, decoder, tracking store)")
    group.add_argument("--config-dir", "-cd", metavar="DIR",
                       help="a folder of your own config groups (model/, dataset/, "
                            "decoder/, tracking/ ...), as for python -m sweep")
    group.add_argument("--config-name", "-cn", default=DEFAULT_CONFIG, metavar="NAME",
                       help="the primary config (default %(default)s)")
    if multirun:
        group.add_argument("--multirun", "-m", action="store_true",
                           help="accepted so a sweep's command line can be used as is; "
                                "sweep overrides (a,b, range()) are expanded either way")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="the sweep's Hydra overrides, e.g. model=tone dataset=calls "
                             "tracking.uri=sqlite:///mlruns/mlflow.db")


# --- composing -------------------------------------------------------------------------------

def _parse(overrides: Sequence[str]) -> list[Override]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return list(OverridesParser.create().parse_overrides(list(overrides)))
    except HydraException as exc:  # Hydra quotes the override: a URI's password with it
        raise ConfigError(_hydra_message(exc)) from None


def _config_dir(value: str) -> Path:
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--config-dir {value}: no such folder (expected a folder of "
                          "config groups: model/, dataset/ ...)")
    return folder


@dataclass(frozen=True)
class _Prepared:
    overrides: list[str]
    folders: list[Path]  # searched after conf/, in this order


@contextmanager
def _prepared(options: ConfigOptions) -> Iterator[_Prepared]:
    """The overrides and the extra config folders; group files are copied into a scratch
    folder under a name of their own (conf/ is searched first: a bundled option of the
    same name would win)."""
    folders = [_config_dir(options.config_dir)] if options.config_dir else []
    extra: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="trt-sweep-conf-")) if options.files else None
    try:
        for group, path in options.files:
            assert scratch is not None
            if not path.is_file():
                raise ConfigError(f"{group} config {path}: no such file.")
            name = f"{path.stem}_file"
            (scratch / group).mkdir(exist_ok=True)
            shutil.copy(path, scratch / group / f"{name}.yaml")
            extra.append(f"{group}={name}")
        if scratch is not None:
            folders.append(scratch)
        yield _Prepared([*options.overrides, *extra], folders)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def expand(overrides: Sequence[str], limit: int = MAX_JOBS) -> list[list[str]]:
    """One override list per job of the sweep these overrides describe (Hydra's basic
    sweeper: the cartesian product of every sweep override's values)."""
    choices: list[list[str]] = []
    for override in _parse(overrides):
        if not override.is_sweep_override():
            choices.append([override.input_line or ""])
            continue
        if override.is_interval_sweep():
            raise ConfigError(f"{override.input_line}: an interval is sampled by the Optuna "
                              "sweeper; list the values (a,b) or use range()")
        key = override.get_key_element()
        choices.append([f"{key}={value}"
                        for value in override.sweep_string_iterator()])
    return [list(job) for job in itertools.islice(itertools.product(*choices), limit)]


def _compose(prepared: _Prepared, overrides: list[str], config_name: str,
             job_name: str) -> DictConfig:
    """Hydra's compose, on the search path ``python -m sweep --config-dir DIR`` builds:
    conf/, then DIR (before the structured configs), as Hydra's own ``run_hydra`` adds it.
    (A ``hydra.searchpath`` override instead would miss a primary config in DIR: ``-cn``.)
    The one place that calls Hydra's compose API (tests/unit/core/test_one_loader.py)."""
    from hydra import compose, version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    register()
    backup = get_gh_backup()  # as hydra.initialize_config_dir: leave Hydra as it was
    try:
        version.setbase("1.3")
        search_path = create_config_search_path(str(PROJECT_ROOT / "conf"))
        for folder in prepared.folders:
            search_path.prepend(provider="command-line", path=f"file://{folder}",
                                anchor=SearchPathQuery(provider="schema"))
        Hydra.create_main_hydra2(task_name=job_name, config_search_path=search_path)
        return compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        # An unknown option or key, a wrong type: Hydra's own words, as one refusal.
        raise ConfigError(_hydra_message(exc)) from None
    finally:
        restore_gh_from_backup(backup)


def _hydra_message(exc: BaseException) -> str:
    from sweep.tracking.store import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)


def compose(options: ConfigOptions, job_name: str = "tool") -> DictConfig:
    """The config of one job with these options, as a single ``python -m sweep`` run
    composes it; sweep overrides (``a,b``) are refused (the tool runs one configuration)."""
    with _prepared(options) as prepared:
        sweeps = [o.input_line or o.get_key_element() for o in _parse(prepared.overrides)
                  if o.is_sweep_override()]
        if sweeps:
            raise ConfigError(f"{', '.join(sweeps)}: this tool reads one configuration; a "
                              "sweep of several values is for python -m sweep -m (or "
                              "python -m sweep.preflight, which checks every job).")
        return _compose(prepared, prepared.overrides, options.config_name, job_name)


def compose_jobs(options: ConfigOptions, job_name: str = "tool",
                 limit: int = MAX_JOBS) -> list[DictConfig]:
    """One config per job of the sweep these options describe (``-m`` expansion)."""
    with _prepared(options) as prepared:
        return [_compose(prepared, job, options.config_name, job_name)
                for job in expand(prepared.overrides, limit)]


def settings(cfg: DictConfig) -> JobSettings:
    """A composed config as the typed settings a job reads; a missing or ill-typed value
    is one refusal naming it."""
    from omegaconf.errors import OmegaConfBaseException

    from sweep.config import JobSettings

    try:
        return JobSettings.from_cfg(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(_hydra_message(exc)) from None


def load(options: ConfigOptions, job_name: str = "tool") -> JobSettings:
    """One job's typed settings, as ``python -m sweep`` with these options would run."""
    return settings(compose(options, job_name))


def load_jobs(options: ConfigOptions, job_name: str = "tool") -> list[JobSettings]:
    return [settings(cfg) for cfg in compose_jobs(options, job_name)]


# --- the tracking store ----------------------------------------------------------------------

def tracking_uri(tracking: TrackingConfig, explicit: str | None = None,
                 say: Callable[[str], None] | None = None) -> str:
    """The store a tool reads: ``--tracking-uri`` when given, else ``tracking.uri`` of the
    loaded config, as the sweep writes it. ``MLFLOW_TRACKING_URI`` is not read, as the
    sweep does not read it; a tool says so when it names another store."""
    from sweep.tracking.store import redact, remember_secret

    uri = explicit or tracking.uri
    remember_secret(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if explicit is None and env and env != uri:
        (say or _stderr)(f"MLFLOW_TRACKING_URI ({redact(env)}) is not read: the sweep writes "
                         f"to tracking.uri, here {redact(uri)}. Pass tracking.uri=... or "
                         "--tracking-uri to read another store.")
    return uri


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
