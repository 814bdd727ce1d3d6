from pathlib import Path

import pytest

from sweep.engine import Engine, EngineFormat
from sweep.errors import ConfigError, ModelError
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.server.base import ServingOptions
from sweep.server.repository import render


def _model(onnx_path: Path, **kw) -> ModelInterface:
    return ModelInterface(name="tiny", onnx_path=onnx_path, contract=Contract.MONOLITHIC,
                          audio_input="signal", logprobs_output="logprobs",
                          states=(StatePair("state", "state_next"),), **kw)


def _engine(path: Path, fmt: str = "onnx_emulated", **flags) -> Engine:
    return Engine(path=path, format=EngineFormat(fmt), flags=FlagSet.from_mapping(flags),
                  builder="emulate", builder_version="t", build_seconds=0.0, log_path=path,
                  runtime={"graph_optimization_level": "ORT_ENABLE_BASIC"})


def test_monolithic_repository_is_self_contained(tiny_onnx, tmp_path):
    repo = render(_model(tiny_onnx), _engine(tiny_onnx), tmp_path / "repo",
                  site_packages="/venv/site", options=ServingOptions(max_batch_size=8,
                                                                     queue_delay_us=500))
    assert repo.entry_model == "model"
    files = {p.name for p in (tmp_path / "repo" / "model" / "1").iterdir()}
    assert files == {"model.onnx", "model.py", "batched.py"}
    config = (tmp_path / "repo" / "model" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config
    assert "max_batch_size: 8" in config
    assert "max_queue_delay_microseconds: 500" in config
    assert 'string_value: "ORT_ENABLE_BASIC"' in config
    assert 'string_value: "/venv/site"' in config
    assert "dims: [ 3200, 1 ]" in config and "dims: [ 20, 35 ]" in config


def test_rendered_sources_are_copies_and_the_engine_a_link(tiny_onnx, tmp_path):
    from sweep.server.repository import TEMPLATES

    repo = render(_model(tiny_onnx), _engine(tiny_onnx), tmp_path / "repo",
                  site_packages="/venv/site", options=ServingOptions())
    version = repo.path / "model" / "1"
    template = TEMPLATES / "model" / "model.py"
    before = template.read_text()
    # Editing the served model.py (what one does to debug it) leaves the template alone.
    (version / "model.py").write_text("# edited\n")
    assert template.read_text() == before
    assert not (version / "batched.py").samefile(TEMPLATES / "common" / "batched.py")
    assert (version / "model.onnx").samefile(tiny_onnx)


def test_plan_repository_uses_tensorrt_backend(tiny_onnx, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really a plan")
    repo = render(_model(tiny_onnx), _engine(plan, "tensorrt_plan"), tmp_path / "repo",
                  site_packages="", options=ServingOptions())
    config = repo.configs[0].read_text()
    assert 'platform: "tensorrt_plan"' in config and "KIND_GPU" in config
    assert "site_packages" not in config
    assert (tmp_path / "repo" / "model" / "1" / "model.plan").read_bytes() == b"not really a plan"


def test_plan_batch_larger_than_engine_is_refused(tiny_onnx, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ConfigError, match="max batch"):
        render(_model(tiny_onnx), _engine(plan, "tensorrt_plan", max_batch=4, opt_batch=4),
               tmp_path / "repo", site_packages="", options=ServingOptions(max_batch_size=16))


def test_interface_mismatch_is_a_model_error(tiny_onnx):
    wrong = ModelInterface(name="w", onnx_path=tiny_onnx, contract=Contract.MONOLITHIC,
                           audio_input="audio", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    with pytest.raises(ModelError, match="does not match model interface"):
        wrong.tensors()
    with pytest.raises(ModelError, match="chunk"):
        _model(tiny_onnx, chunk_ms=300).tensors()


def test_missing_and_corrupt_onnx(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        _model(tmp_path / "nope.onnx").tensors()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ModelError, match="cannot be read"):
        _model(bad).tensors()


def _instance_kinds(config_path: Path) -> list[str]:
    """The instance kinds of a rendered config.pbtxt, read with Triton's own protobuf."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    return [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)
            for g in config.instance_group]


def test_plan_is_served_on_gpu_instances_by_default(tiny_onnx, tmp_path):
    # Triton's TensorRT backend refuses anything else: "TensorRT backend supports only GPU
    # device". The kind follows the engine format; no option has to remember it.
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    repo = render(_model(tiny_onnx), _engine(plan, "tensorrt_plan"), tmp_path / "plan",
                  site_packages="", options=ServingOptions())
    assert _instance_kinds(repo.configs[0]) == ["KIND_GPU"]
    emulated = render(_model(tiny_onnx), _engine(tiny_onnx), tmp_path / "emulated",
                      site_packages="", options=ServingOptions())
    assert _instance_kinds(emulated.configs[0]) == ["KIND_CPU"]
