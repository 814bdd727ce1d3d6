"""The sweep's preflight callback checks every job's inputs before the first job: each job's
config composed as Hydra's launcher composes it, each distinct problem printed once, exit 2
(``ExitCode.REFUSED``). The sweep itself (a real multirun, its MLflow store) is run by
tests/faults/test_input_faults.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, open_dict, read_write

from sweep.cli import ExitCode
from sweep.preflight.callback import PreflightCallback
from sweep.preflight.jobs import job_configs


@pytest.fixture
def multirun() -> Iterator[Any]:
    """``master(overrides)``: a multirun's master config as Hydra hands it to
    ``on_multirun_start`` (the overrides as typed in hydra.overrides.task), under a
    running Hydra whose config loader composes the jobs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    register()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3",
                               job_name="test"):
        def master(overrides: list[str]) -> DictConfig:
            parsed = OverridesParser.create().parse_overrides(overrides)
            plain = [o.input_line or "" for o in parsed if not o.is_sweep_override()]
            cfg = compose(config_name="config", overrides=plain, return_hydra_config=True)
            with read_write(cfg), open_dict(cfg):
                cfg.hydra.overrides.task = overrides
            return cfg

        yield master


def test_each_job_is_composed_as_the_launcher_composes_it(multirun: Any) -> None:
    master = multirun(["dataset=demo_tiny", "trt.precision=fp32,fp16", "eval.streams=1,2"])
    jobs = job_configs(master)
    assert [(j.trt.precision, j.eval.streams) for j in jobs] == [
        ("fp32", 1), ("fp32", 2), ("fp16", 1), ("fp16", 2)]
    assert {j.dataset.name for j in jobs} == {"demo_tiny"}


def test_an_interval_is_left_to_its_sampler(multirun: Any) -> None:
    master = multirun(["dataset=demo_tiny", "trt.opt_level=0,5"])
    with read_write(master), open_dict(master):
        master.hydra.sweeper.params = {"trt.autocast_data_max": "interval(100, 1000)"}
    assert [j.trt.opt_level for j in job_configs(master)] == [0, 5]


def _failures(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    err = capsys.readouterr().err.splitlines()
    return [line for line in err if line.startswith("trt-sweep: preflight: FAIL")], err


def test_a_missing_onnx_of_two_jobs_is_refused_once(
        multirun: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "model.onnx"
    master = multirun(["dataset=demo_tiny", f"model.onnx_path={missing}",
                       "trt.precision=fp32,fp16"])
    with pytest.raises(SystemExit) as stopped:
        PreflightCallback().on_multirun_start(master)
    assert stopped.value.code == ExitCode.REFUSED
    failed, err = _failures(capsys)
    (line,) = [f for f in failed if f.startswith("trt-sweep: preflight: FAIL model ")]
    assert f"{missing} does not exist" in line, line
    assert "\n".join(err).count(str(missing)) == 1
    assert err[-1].startswith(f"trt-sweep: {len(failed)} preflight check(s) failed for the 2 "
                              "job(s) of the sweep; no job was started")


def test_each_bad_input_of_a_sweep_is_named(multirun: Any, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    """A flag set TensorRT rejects, a wrong chunk, a missing calibration set: each once."""
    master = multirun(["dataset=demo_tiny", "model.chunk_ms=300",
                       "dataset.calibration=no_such_set", "trt.strongly_typed=true",
                       "trt.precision=int8,fp16", "trt.opt_level=0,9"])
    with pytest.raises(SystemExit):
        PreflightCallback().on_multirun_start(master)
    failed, _ = _failures(capsys)
    names = [f.split(": ")[2] for f in failed]
    assert names.count("FAIL flag set") == 1  # opt_level 9, in two jobs
    assert names.count("FAIL model demo_monolithic") == 1  # four jobs share it
    assert names.count("FAIL calibration set no_such_set") == 1


def test_sound_inputs_pass_in_a_second(multirun: Any, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    """The demo's inputs pass (a host without tritonserver may still refuse), in the time
    the sweep can spare before its first job: one check per distinct model and dataset."""
    master = multirun(["dataset=demo_tiny", "trt.precision=fp32,fp16,bf16"])
    started = time.perf_counter()
    try:
        PreflightCallback().on_multirun_start(master)
    except SystemExit:
        failed, _ = _failures(capsys)
        assert all("tritonserver" in f for f in failed), failed
    seconds = time.perf_counter() - started
    assert seconds < 10, f"the preflight took {seconds:.1f} s"  # ~1-2 s measured here
