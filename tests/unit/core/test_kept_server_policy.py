"""Which launchers may keep one server for the whole sweep (server.keep_running)."""

from __future__ import annotations

from omegaconf import OmegaConf

from sweep.__main__ import _jobs_run_here
from sweep.config import ServerConfig, register


def test_basic_launcher_runs_jobs_in_the_sweeps_process():
    launcher = OmegaConf.create(
        {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    assert _jobs_run_here(launcher)


def test_ray_launcher_does_not():
    launcher = OmegaConf.create(
        {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"})
    assert not _jobs_run_here(launcher)
    assert not _jobs_run_here(OmegaConf.create({}))


def test_local_server_keeps_running_by_default_and_docker_does_not():
    from hydra.core.config_store import ConfigStore

    register()
    repo = ConfigStore.instance().repo["server"]
    assert repo["local.yaml"].node.keep_running is True
    assert repo["docker.yaml"].node.keep_running is False
    assert ServerConfig().keep_running is False
