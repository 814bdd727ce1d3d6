"""server.state=server: the rendered configs read by Triton's own model-config protobuf,
the sequence batcher as Triton documents it (oldest strategy; control inputs for the
python backend, implicit state with zero initial state for a TensorRT plan)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from sweep.doctor.cli import load_model
from sweep.engine import Engine, EngineFormat
from sweep.errors import ConfigError
from sweep.flags import FlagSet
from sweep.model import ModelInterface
from sweep.server.base import ServingOptions
from sweep.server.repository import render
from tests.standins.triton_rules import check_repository

SERVER_STATE = ServingOptions(state="server", max_candidate_sequences=8,
                              sequence_queue_delay_us=250, sequence_idle_us=3_000_000)


def _render(model: ModelInterface, fmt: EngineFormat, dest: Path,
            options: ServingOptions = SERVER_STATE) -> model_config_pb2.ModelConfig:
    engine_file = dest.parent / ("model.plan" if fmt is EngineFormat.TENSORRT_PLAN
                                 else "model.onnx")
    engine_file.write_bytes(model.onnx_path.read_bytes())
    engine = Engine(path=engine_file, format=fmt, flags=FlagSet(), builder="test",
                    builder_version="t", build_seconds=0.0, log_path=engine_file)
    render(model, engine, dest, site_packages="/venv/site", options=options)
    config = model_config_pb2.ModelConfig()
    text_format.Parse((dest / "model" / "config.pbtxt").read_text(), config)
    return config


def test_python_backend_keeps_state_by_correlation_id(tmp_path: Path) -> None:
    model = load_model("demo_monolithic")
    config = _render(model, EngineFormat.ONNX_EMULATED, tmp_path / "repo")
    names = {t.name for t in config.input} | {t.name for t in config.output}
    assert names == {model.audio_input, model.logprobs_output}  # no state on the wire
    assert not config.HasField("dynamic_batching")
    batcher = config.sequence_batching
    assert batcher.max_sequence_idle_microseconds == 3_000_000
    assert batcher.oldest.max_candidate_sequences == 8
    assert batcher.oldest.max_queue_delay_microseconds == 250
    kinds = {c.name: c.control[0].kind for c in batcher.control_input}
    S = model_config_pb2.ModelSequenceBatching.Control
    assert kinds == {"START": S.CONTROL_SEQUENCE_START, "END": S.CONTROL_SEQUENCE_END,
                     "CORRID": S.CONTROL_SEQUENCE_CORRID}
    assert len(batcher.state) == 0  # the python backend carries no implicit state
    source = (tmp_path / "repo" / "model" / "1" / "model.py").read_text()
    assert "CORRID" in source and "self.kept" in source
    assert check_repository(tmp_path / "repo", gpus=False) == []


def test_plan_uses_implicit_state_with_zero_initial_state(tmp_path: Path) -> None:
    model = load_model("demo_monolithic")
    inputs, _ = model.tensors()
    config = _render(model, EngineFormat.TENSORRT_PLAN, tmp_path / "repo")
    assert {t.name for t in config.input} == {model.audio_input}
    (state,) = config.sequence_batching.state
    pair = model.states[0]
    assert (state.input_name, state.output_name) == (pair.input, pair.output)
    assert tuple(state.dims) == inputs[pair.input].dims
    assert state.data_type == model_config_pb2.TYPE_FP32
    (initial,) = state.initial_state
    assert initial.zero_data and tuple(initial.dims) == tuple(state.dims)
    assert config.sequence_batching.HasField("oldest")
    assert len(config.sequence_batching.control_input) == 0  # the backend carries the state
    assert check_repository(tmp_path / "repo", gpus=True) == []


def test_client_state_keeps_the_dynamic_batcher(tmp_path: Path) -> None:
    config = _render(load_model("demo_monolithic"), EngineFormat.ONNX_EMULATED,
                     tmp_path / "repo", ServingOptions())
    assert config.HasField("dynamic_batching") and not config.HasField("sequence_batching")


def test_server_state_is_refused_for_the_ensemble_and_for_unknown_values(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.state=server serves the monolithic"):
        _render(load_model("demo_skip_preprocessor"), EngineFormat.ONNX_EMULATED,
                tmp_path / "a")
    with pytest.raises(ConfigError, match=r"server\.state=.triton."):
        _render(load_model("demo_monolithic"), EngineFormat.ONNX_EMULATED, tmp_path / "b",
                ServingOptions(state="triton"))
