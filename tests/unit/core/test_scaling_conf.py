"""The presets of the scaling features compose and mean what docs/scaling.md says: layer-pin
sets (conf/trt_pins), flag sets found by the precision search (conf/trt), the Optuna
sweeper (conf/hydra/sweeper) and the Ray launchers (conf/hydra/launcher)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest
from hydra import compose, initialize_config_dir

from sweep.config import as_dict, register
from sweep.flags import FlagSet
from tests.support.paths import DEMO, ROOT

CONF = ROOT / "conf"


def load(overrides: list[str], hydra: bool = False):
    register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides, return_hydra_config=hydra)


def demo_graph() -> onnx.ModelProto | None:
    path = DEMO / "demo_monolithic.onnx"
    return onnx.load(str(path)) if path.exists() else None


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "trt_pins").glob("*.yaml")))
def test_pin_presets_are_valid_flag_sets(preset):
    flags = FlagSet.from_mapping(as_dict(load([f"+trt_pins={preset}", "trt.precision=bf16"]).trt))
    assert flags.precision == "bf16"
    assert (preset == "none") == (flags.layer_precisions == ())
    graph = demo_graph()
    if graph is not None:  # every pattern names something in the demo model
        from sweep.builder.emulate import plan

        pinned = plan(flags, graph).pinned
        assert (preset == "none") == (len(pinned) == 0)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "trt").glob("*.yaml"))
                         if (CONF / "trt").is_dir() else [])
def test_searched_flag_sets_load_and_apply_to_the_demo_model(preset):
    flags = FlagSet.from_mapping(as_dict(load([f"trt={preset}"]).trt))
    graph = demo_graph()
    if graph is not None:
        from sweep.builder.emulate import plan

        plan(flags, graph)  # raises if a pattern no longer names a node (re-exported model)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="the `optuna` extra is not installed")
def test_pareto_sweeper_minimises_what_a_job_returns():
    sweeper = load(["hydra/sweeper=pareto"], hydra=True).hydra.sweeper
    assert list(sweeper.direction) == ["minimize", "minimize"]  # (wer, latency_p99_ms)
    assert sweeper.sampler._target_ == "optuna.samplers.NSGAIISampler"
    assert set(sweeper.params) == {"trt.precision", "trt.opt_level", "trt.tf32", "+trt_pins"}
    pins = sweeper.params["+trt_pins"]
    for name in pins[pins.index("(") + 1:pins.index(")")].split(","):
        assert (CONF / "trt_pins" / f"{name.strip()}.yaml").exists()


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                    reason="the `ray` extra is not installed")
@pytest.mark.parametrize(("preset", "gpus", "address"), [("ray_local", 0, None),
                                                          ("ray_gpu", 1, "auto")])
def test_ray_launchers(preset, gpus, address):
    launcher = load([f"hydra/launcher={preset}"], hydra=True).hydra.launcher
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.remote.num_gpus == gpus and launcher.ray.remote.num_cpus == 1
    assert launcher.ray.init.address == address


def test_docs_name_the_presets():
    text = (ROOT / "docs" / "scaling.md").read_text()
    for name in ("hydra/sweeper=pareto", "hydra/launcher=ray_local", "hydra/launcher=ray_gpu",
                 "builder.cache_max_gb", "+force=true", "resumed_from"):
        assert name in text, name
    assert Path(CONF / "hydra" / "sweeper" / "pareto.yaml").exists()
