"""What render() writes, read with Triton's own model-config protobuf and held to the
backend rules a TensorRT deployment meets first (tests/standins/triton_rules.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweep.doctor.cli import load_model
from sweep.engine import Engine, EngineFormat
from sweep.flags import FlagSet
from sweep.model import ModelInterface
from sweep.server.base import ServingOptions
from sweep.server.repository import render
from tests.standins.triton_rules import check_repository


def _engine(path: Path, fmt: EngineFormat) -> Engine:
    return Engine(path=path, format=fmt, flags=FlagSet(), builder="test",
                  builder_version="t", build_seconds=0.0, log_path=path)


def _render(model: ModelInterface, fmt: EngineFormat, dest: Path) -> Path:
    engine_file = dest.parent / ("model.plan" if fmt is EngineFormat.TENSORRT_PLAN
                                 else "model.onnx")
    engine_file.write_bytes(model.onnx_path.read_bytes())
    render(model, _engine(engine_file, fmt), dest, site_packages="/venv/site",
           options=ServingOptions())
    return dest


@pytest.fixture(params=["demo_monolithic", "demo_skip_preprocessor"])
def model(request: pytest.FixtureRequest) -> ModelInterface:
    return load_model(request.param)


def test_emulated_repository_loads_on_a_cpu_server(model: ModelInterface,
                                                   tmp_path: Path) -> None:
    repo = _render(model, EngineFormat.ONNX_EMULATED, tmp_path / "repo")
    assert check_repository(repo, gpus=False) == []


def test_plan_repository_loads_on_a_gpu_server_only(model: ModelInterface,
                                                    tmp_path: Path) -> None:
    repo = _render(model, EngineFormat.TENSORRT_PLAN, tmp_path / "repo")
    assert check_repository(repo, gpus=True) == []
    assert any("KIND_GPU but no GPU" in e for e in check_repository(repo, gpus=False))


def test_a_plan_on_cpu_instances_is_refused_as_tritons_tensorrt_backend_does(
        tmp_path: Path) -> None:
    repo = _render(load_model("demo_monolithic"), EngineFormat.TENSORRT_PLAN, tmp_path / "r")
    config = repo / "model" / "config.pbtxt"
    config.write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))
    errors = check_repository(repo)
    assert any("unable to load model 'model', TensorRT backend supports only GPU device"
               in e for e in errors), errors


def test_misspelt_fields_and_broken_ensemble_wiring_are_errors(tmp_path: Path) -> None:
    repo = _render(load_model("demo_skip_preprocessor"), EngineFormat.ONNX_EMULATED,
                   tmp_path / "r")
    model_config = repo / "model" / "config.pbtxt"
    model_config.write_text(model_config.read_text().replace("max_batch_size",
                                                             "max_batch_sise"))
    assert any("failed to parse" in e for e in check_repository(repo, gpus=False))
    repo = _render(load_model("demo_skip_preprocessor"), EngineFormat.ONNX_EMULATED,
                   tmp_path / "r2")
    ensemble = repo / "ensemble" / "config.pbtxt"
    text, n = re.subn(r'value: "([^"]+)"', r'value: "\1_typo"', ensemble.read_text(), count=1)
    assert n == 1
    ensemble.write_text(text)
    errors = check_repository(repo, gpus=False)
    assert any("ensemble tensor" in e and "_typo" in e for e in errors), errors
