"""What render() writes, read with Triton's own model-config protobuf and held to the
backend rules a TensorRT deployment meets first (tests/standins/triton_rules.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


def _config(repo: Path, name: str = "model") -> Any:
    from tests.standins.triton_rules import parse

    return parse(repo / name / "config.pbtxt")


def test_a_plan_warms_up_at_batch_1_and_16_typed_like_its_inputs(tmp_path: Path) -> None:
    model = load_model("demo_monolithic")
    repo = _render(model, EngineFormat.TENSORRT_PLAN, tmp_path / "repo")
    config = _config(repo)
    assert [w.batch_size for w in config.model_warmup] == [1, 16]
    declared = {t.name: t for t in config.input}
    for warmup in config.model_warmup:
        assert set(warmup.inputs) == set(declared)
        for key, data in warmup.inputs.items():
            assert data.data_type == declared[key].data_type and data.zero_data
            assert list(data.dims) == list(declared[key].dims)
    assert check_repository(repo) == []
    emulated = _render(model, EngineFormat.ONNX_EMULATED, tmp_path / "emu")
    assert not _config(emulated).model_warmup  # python backend: sessions made at load


def test_a_warmup_typed_unlike_its_input_is_refused_as_in_tones_public_config(
        tmp_path: Path) -> None:
    # T-one's public TensorRT config declares `signal` TYPE_INT16 and warms it with
    # TYPE_INT32 zero data; Triton normalises warm-up requests like any request.
    repo = _render(load_model("demo_monolithic"), EngineFormat.TENSORRT_PLAN, tmp_path / "r")
    path = repo / "model" / "config.pbtxt"
    declared = _config(repo).input[0]
    from tritonclient.grpc import model_config_pb2 as mc

    own, other = mc.DataType.Name(declared.data_type), "TYPE_INT32"
    if own == other:
        other = "TYPE_INT16"
    text = path.read_text()
    head, _, rest = text.partition("model_warmup")
    rest = rest.replace(f'key: "{declared.name}"\n      value: {{\n        data_type: {own}',
                        f'key: "{declared.name}"\n      value: {{\n        data_type: {other}',
                        1)
    path.write_text(head + "model_warmup" + rest)
    errors = check_repository(repo)
    assert any(f"inference input '{declared.name}' data-type is '{other[5:]}', but model "
               f"'model' expects '{own[5:]}'" in e for e in errors), errors


def test_server_state_on_a_plan_shares_and_grows_the_state_buffers(tmp_path: Path) -> None:
    model = load_model("demo_monolithic")
    engine_file = tmp_path / "model.plan"
    engine_file.write_bytes(model.onnx_path.read_bytes())
    repo = tmp_path / "repo"
    render(model, _engine(engine_file, EngineFormat.TENSORRT_PLAN), repo,
           site_packages="", options=ServingOptions(state="server"))
    config = _config(repo)
    states = config.sequence_batching.state
    assert states and all(s.use_same_buffer_for_input_output and s.use_growable_memory
                          for s in states)
    assert not config.model_warmup  # warm-up requests carry no sequence
    assert check_repository(repo) == []
