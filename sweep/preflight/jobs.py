"""Every job's composed config of a multirun, before the first job: what the preflight
callback checks the inputs of (the model, the test set, the calibration set, the flag set)
so that a bad input stops the sweep once instead of failing each of its jobs."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.loader import expand


def _enumerable(overrides: list[str]) -> list[str]:
    """The overrides whose values can be listed: an ``interval(...)`` (sampled by the Optuna
    sweeper) is left out, so its key keeps the default while every other setting is checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.input_line or "" for o in parsed if not o.is_interval_sweep()]


def _sweeper_params(master: DictConfig) -> list[str]:
    """``hydra.sweeper.params`` as overrides (the basic and the Optuna sweeper both take
    the sweep's search space from there, before the command line's overrides)."""
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None)
    if not params:
        return []
    return [f"{key}={value}" for key, value in params.items()]


def job_configs(master: DictConfig) -> list[DictConfig]:
    """One composed config per job of the multirun whose master config this is (the first
    ones ``expand`` lists, as preflight does), composed as Hydra's launcher composes them:
    through the running Hydra's own config loader (a Hydra callback runs under it), so
    ``--config-dir``, ``hydra.searchpath`` and ``--config-name`` apply as they will to the
    jobs."""
    from hydra.core.global_hydra import GlobalHydra

    overrides = [str(o) for o in master.hydra.overrides.task]
    jobs = expand(_enumerable(_sweeper_params(master) + overrides))
    loader: Any = GlobalHydra.instance().config_loader()
    return [loader.load_sweep_config(master, job) for job in jobs]
