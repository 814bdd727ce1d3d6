"""The precision stage on a small model: AutoCast's casts with FP32 keeps, Q/DQ from
streamed calibration data, the content-addressed cache, and the clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sweep.errors import ConfigError, FlagSetError
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.precision.calibration import CalibrationData, collect
from sweep.precision.realise import precision_table, realise
from tests.support.models import tiny_monolithic_onnx

pytest.importorskip("modelopt.onnx", reason="the precision stage needs ModelOpt "
                    "(bash scripts/setup.sh --dev installs it)")


def _model(path: Path) -> ModelInterface:
    return ModelInterface(name="tiny", onnx_path=path, contract=Contract.MONOLITHIC,
                          audio_input="signal", logprobs_output="logprobs",
                          states=(StatePair("state", "state_next"),))


def _calibration(rows: int = 16) -> CalibrationData:
    rng = np.random.default_rng(0)
    arrays = {"signal": rng.integers(-3000, 3000, (rows, 3200, 1)).astype(np.int32),
              "state": rng.normal(size=(rows, 10)).astype(np.float32)}
    return CalibrationData(arrays, 2, "test")


def test_bf16_keeps_the_kept_op_types_in_fp32(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "bf16",
                                  "layer_precisions": {"LogSoftmax": "fp32"}})
    typed = realise(onnx_path, flags, tmp_path / "cache", _calibration())
    assert typed.realised and typed.path != onnx_path
    rows = {r["name"]: r for r in precision_table(onnx.load(str(typed.path)))}
    assert rows["logsoftmax"]["stored"] == "fp32"
    assert any(r["stored"] == "bf16" for r in rows.values()), rows
    again = realise(onnx_path, flags, tmp_path / "cache", _calibration())
    assert again.cached and again.digest == typed.digest


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_realising_leaves_the_users_onnx_as_it_was(precision: str, tmp_path: Path) -> None:
    # ModelOpt's quantiser saves shape inference over the file it is given.
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    before = onnx_path.read_bytes()
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": precision})
    typed = realise(onnx_path, flags, tmp_path / "cache", _calibration())
    assert typed.realised
    assert onnx_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "m.onnx"]


def test_int8_puts_qdq_nodes_in_the_graph(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8"})
    typed = realise(onnx_path, flags, tmp_path / "cache", _calibration())
    ops = {n.op_type for n in onnx.load(str(typed.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_nothing_to_realise_is_the_model_itself(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    typed = realise(onnx_path, FlagSet.from_mapping({"strongly_typed": True}), tmp_path)
    assert not typed.realised and typed.path == onnx_path


def test_a_keep_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "fp16",
                                  "layer_precisions": {"LayerNorm": "fp32"}})
    with pytest.raises(FlagSetError, match=r"\['LayerNorm'\] match no op type or node name"):
        realise(onnx_path, flags, tmp_path / "cache", _calibration())


def test_calibration_records_streamed_inputs_and_refuses_too_few(tmp_path: Path) -> None:
    from sweep.data.manifest import load_manifest
    from tests.support.paths import DEMO

    model = ModelInterface(name="demo", onnx_path=DEMO / "demo_monolithic.onnx",
                           contract=Contract.MONOLITHIC, audio_input="signal",
                           logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    utterances = load_manifest(DEMO / "data" / "demo_calib")
    data = collect(model, utterances, 2, cache_dir=tmp_path)
    assert set(data.arrays) == {"signal", "state"} and data.samples > 2
    # A second job of the sweep reads the same pairs back instead of streaming again.
    assert len(list((tmp_path / "calibration").glob("*.npz"))) == 1
    assert collect(model, utterances, 2, cache_dir=tmp_path).digest == data.digest
    # The state of later chunks is what the model left behind, not zeros.
    assert np.abs(data.arrays["state"][1:]).max() > 0
    with pytest.raises(ConfigError, match=f"100 calibration utterances asked for, the "
                                          f"calibration set has {len(utterances)}"):
        collect(model, utterances, 100)


@pytest.mark.parametrize(("remainder", "low"), [("fp16", "fp16"), ("bf16", "bf16"),
                                                ("fp32", None)])
def test_int8_remainder_is_high_precision_dtype(remainder: str, low: str | None,
                                                tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8",
                                  "high_precision_dtype": remainder,
                                  "layer_precisions": {"LogSoftmax": "fp32"}})
    typed = realise(onnx_path, flags, tmp_path / "cache", _calibration())
    rows = {r["name"]: r for r in precision_table(onnx.load(str(typed.path)))}
    stored = {r["stored"] for r in rows.values()}
    assert "int8" in stored  # still quantised
    assert rows["logsoftmax"]["stored"] == "fp32"  # the FP32 keep still applies
    if low is None:
        assert not stored & {"fp16", "bf16"}, stored
    else:
        assert low in stored, stored


def test_modelopts_default_remainder_is_fp16_and_part_of_the_identity() -> None:
    int8 = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8"})
    assert int8.high_precision_dtype == "fp16"
    fp32_rest = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8",
                                      "high_precision_dtype": "fp32"})
    assert int8.digest != fp32_rest.digest and int8.label != fp32_rest.label
    with pytest.raises(FlagSetError, match="int8/fp8 realised in the graph only"):
        FlagSet.from_mapping({"strongly_typed": True, "precision": "fp16",
                              "high_precision_dtype": "bf16"})


def test_autotune_is_planned_not_made_here(tmp_path: Path) -> None:
    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8",
                                  "qdq_placement": "autotune"})
    with pytest.raises(FlagSetError, match=r"measures on the GPU.*--use_trtexec"):
        realise(onnx_path, flags, tmp_path / "cache", _calibration())
    planned = realise(onnx_path, flags, tmp_path / "cache", _calibration(), plan_only=True)
    assert not planned.realised and "autotune" in planned.tool


def test_the_remainder_is_logged_only_where_there_is_one() -> None:
    assert FlagSet.from_mapping({"strongly_typed": True, "precision": "fp16"}).params()[
        "trt.high_precision_dtype"] == "-"
    assert FlagSet.from_mapping({"strongly_typed": True, "precision": "int8"}).params()[
        "trt.high_precision_dtype"] == "fp16"
