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
    if graph is None:
        return
    if flags.in_graph:
        # Realised in the graph (int8 Q/DQ, AutoCast): the emulator runs the typed ONNX the
        # precision stage makes; here every kept pattern must still name a demo node.
        from sweep.builder.layers import unmatched

        assert unmatched(graph.graph, flags.layer_precisions) == []
        return
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
                                                          ("ray_gpu", 1, "auto"),
                                                          ("ray_cluster", 0, "auto")])
def test_ray_launchers(preset, gpus, address, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    launcher = load([f"hydra/launcher={preset}"], hydra=True).hydra.launcher
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.remote.num_gpus == gpus and launcher.ray.remote.num_cpus == 1
    assert launcher.ray.init.address == address
    if address is not None:
        # Ray refuses object_store_memory when joining a cluster; the launcher would set it.
        assert "object_store_memory" in launcher.ray.init
        assert launcher.ray.init.object_store_memory is None


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                    reason="the `ray` extra is not installed")
def test_a_multihost_sweep_names_every_relative_output_path(monkeypatch):
    from sweep.config import multihost_paths
    from sweep.preflight.paths import RelativePathError, check_multihost

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert multihost_paths(load(["hydra/launcher=ray_local"], hydra=True)) is None
    cfg = load(["hydra/launcher=ray_cluster"], hydra=True)
    assert cfg.hydra.launcher.ray.init.address == "10.0.0.1:6379"
    paths = multihost_paths(cfg)
    assert paths is not None
    with pytest.raises(RelativePathError) as refused:
        check_multihost(paths)
    message = str(refused.value)
    for setting in ("hydra.sweep.dir=multirun/", "builder.cache_dir=~/",
                    "tracking.uri=sqlite:///mlruns", "tracking.artifact_root=mlruns/"):
        assert setting in message, setting
    check_multihost({**paths, "hydra.sweep.dir": "/shared/multirun/a",
                     "builder.cache_dir": "/shared/engines",
                     "tracking.uri": "http://head:5000", "tracking.artifact_root": None})
    check_multihost({"tracking.uri": "sqlite:////shared/mlflow.db",
                     "tracking.artifact_root": "s3://bucket/artifacts"})


def test_readme_and_docs_use_the_cluster_tool_as_it_is():
    import re

    from sweep.cluster.cli import COMMANDS

    commands = set(COMMANDS)
    for doc in (ROOT / "README.md", ROOT / "docs" / "scaling.md"):
        used = re.findall(r"python -m sweep\.cluster ([a-z-]+) --root", doc.read_text())
        assert {"up", "env", "down"} <= set(used) <= commands, (doc, used)


def test_docs_name_the_presets():
    text = (ROOT / "docs" / "scaling.md").read_text()
    for name in ("hydra/sweeper=pareto", "hydra/launcher=ray_local", "hydra/launcher=ray_gpu",
                 "hydra/launcher=ray_cluster", "tracking.artifact_root=null",
                 "builder.cache_max_gb", "+force=true", "resumed_from"):
        assert name in text, name
    assert Path(CONF / "hydra" / "sweeper" / "pareto.yaml").exists()
