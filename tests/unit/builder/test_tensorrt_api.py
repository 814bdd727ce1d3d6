"""builder=tensorrt without TensorRT: the refusal, and the flag mapping as data.

TensorRT's builder cannot be installed here, so ``apply_settings`` is driven with a small
recording stand-in for the few API objects it touches; what TensorRT then does with the
configuration is only exercised on a GPU host (docs/gpu-hosts.md).
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from sweep.builder.tensorrt_api import TensorRTBuilder, apply_settings, builder_settings
from sweep.errors import BuildError, FlagSetError
from sweep.flags import FlagSet

SHAPES = {"signal": (2400, 1), "state": (64,)}


def test_not_importable_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BuildError, match="not importable") as info:
        TensorRTBuilder()
    assert "builder=trtexec" in str(info.value) and "builder=emulate" in str(info.value)


def test_settings_default() -> None:
    s = builder_settings(FlagSet(), SHAPES)
    assert s.network_flags == () and s.set_flags == () and s.clear_flags == ()
    assert s.optimization_level == 3
    assert s.profile["signal"] == ((1, 2400, 1), (16, 2400, 1), (16, 2400, 1))
    assert s.profile["state"] == ((1, 64), (16, 64), (16, 64))


def test_settings_strongly_typed_and_old_versions() -> None:
    typed = FlagSet.from_mapping({"strongly_typed": True, "opt_level": 5})
    assert builder_settings(typed, SHAPES).network_flags == ("STRONGLY_TYPED",)
    assert builder_settings(FlagSet(), SHAPES, version=(8, 6, 1)).network_flags == \
        ("EXPLICIT_BATCH",)
    with pytest.raises(FlagSetError):
        builder_settings(FlagSet.from_mapping({"precision": "fp16"}), SHAPES,
                         version=(11, 0, 0))


def test_settings_seed_best_build() -> None:
    pins = {"LayerNormalization": "fp32"}
    f = FlagSet.from_mapping({"precision": "bf16", "precision_constraints": "obey",
                              "tf32": False, "opt_level": 0, "layer_precisions": pins,
                              "layer_output_types": pins})
    resolved = {"/ln0/LayerNormalization": "fp32"}
    s = builder_settings(f, SHAPES, layer_precisions=resolved, layer_output_types=resolved)
    assert s.set_flags == ("BF16", "OBEY_PRECISION_CONSTRAINTS")
    assert s.clear_flags == ("TF32",)
    assert s.optimization_level == 0
    assert s.layer_precisions == {"/ln0/LayerNormalization": "float32"}
    assert s.layer_output_types == {"/ln0/LayerNormalization": "float32"}


def test_settings_unresolved_patterns() -> None:
    f = FlagSet.from_mapping({"precision": "fp16", "precision_constraints": "prefer",
                              "layer_precisions": {"Softmax": "fp32"}})
    with pytest.raises(FlagSetError, match="resolved"):
        builder_settings(f, SHAPES)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_flag(self, flag: str) -> None:
        self.calls.append(("set_flag", flag))

    def clear_flag(self, flag: str) -> None:
        self.calls.append(("clear_flag", flag))

    def add_optimization_profile(self, profile: Any) -> None:
        self.calls.append(("profile", profile.shapes))


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Any, ...]] = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (lo, opt, hi)


class _Layer:
    def __init__(self, name: str, outputs: int = 1) -> None:
        self.name, self.num_outputs = name, outputs
        self.precision: str | None = None
        self.output_types: dict[int, str] = {}

    def set_output_type(self, index: int, dtype: str) -> None:
        self.output_types[index] = dtype


def test_apply_settings_drives_the_api() -> None:
    enum = SimpleNamespace(**{n: n for n in ("FP16", "BF16", "TF32", "DETAILED",
                                             "OBEY_PRECISION_CONSTRAINTS")})
    trt = SimpleNamespace(BuilderFlag=enum, ProfilingVerbosity=enum, float32="f32")
    layers = [_Layer("/ln0/LayerNormalization", 2), _Layer("/mm/MatMul")]
    network = SimpleNamespace(num_layers=2, get_layer=lambda i: layers[i])
    builder = SimpleNamespace(create_optimization_profile=_Profile)
    config = _Recorder()
    pins = {"LayerNormalization": "fp32"}
    f = FlagSet.from_mapping({"precision": "bf16", "precision_constraints": "obey",
                              "tf32": False, "opt_level": 1, "layer_precisions": pins,
                              "layer_output_types": pins})
    resolved = {"/ln0/LayerNormalization": "fp32", "/gone/Softmax": "fp32"}
    s = builder_settings(f, SHAPES, layer_precisions=resolved, layer_output_types=resolved)
    unmatched = apply_settings(trt, builder, network, config, s)
    assert unmatched == ["/gone/Softmax"]
    assert ("set_flag", "BF16") in config.calls
    assert ("set_flag", "OBEY_PRECISION_CONSTRAINTS") in config.calls
    assert ("clear_flag", "TF32") in config.calls
    assert config.builder_optimization_level == 1  # type: ignore[attr-defined]
    assert config.profiling_verbosity == "DETAILED"  # type: ignore[attr-defined]
    assert layers[0].precision == "f32" and layers[0].output_types == {0: "f32", 1: "f32"}
    assert layers[1].precision is None
    (profile,) = [c[1] for c in config.calls if c[0] == "profile"]
    assert profile["state"] == ((1, 64), (16, 64), (16, 64))
