"""Realised precision: the engine inspector's JSON of TensorRT 10 and 11 (fixtures from
NVIDIA's documented examples, tests/unit/builder/fixtures/SOURCES.md), the emulator's record
of the typed graph it executes, and the mismatch a label gets when its engine does not run
what it says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweep.builder import layer_info
from sweep.builder.layer_info import Realised, dtype_of, mismatch, parse_layer_info
from sweep.flags import FlagSet

FIXTURES = Path(__file__).parent / "fixtures"


def test_tensorrt_10_layout_reads_format_datatype_per_tensor() -> None:
    realised = layer_info.read_engine_layers(FIXTURES / "layer_info_trt10_nvidia_docs.json")
    assert realised.source == "trtexec 10 layout"
    assert realised.layers == [("matMul1_myl0_0", "gemm", "fp32")]
    assert realised.shares()["fp32"] == 1.0 and realised.metrics()["realised_layers"] == 1


def test_tensorrt_11_layout_is_recognised_by_its_io_tensors() -> None:
    realised = layer_info.read_engine_layers(FIXTURES / "layer_info_trt11_nvidia_docs.json")
    assert realised.source == "trtexec 11 layout"
    # No layers listed: nothing verified, which is a note, not a mismatch.
    assert realised.checked == 0 and "not verified" in realised.note
    assert mismatch("fp16", realised, {"fp16": 1.0}) is None
    assert "realised_share_fp32" not in realised.metrics()


@pytest.mark.parametrize(("text", "want"), [
    ("Float", "fp32"), ("Row major linear FP32 format (kLINEAR)", "fp32"),
    ("Half", "fp16"), ("BFloat16", "bf16"), ("Int8", "int8"), ("FP8", "fp8"),
    ("Int32", "int"), ("UInt8", "int"), ("Bool", "int")])
def test_type_names(text: str, want: str) -> None:
    assert dtype_of(text) == want


def test_layer_names_only_cannot_be_checked() -> None:
    realised = parse_layer_info({"Layers": ["a", "b"], "Bindings": []})
    assert realised.checked == 0 and "layer names only" in realised.note


def test_time_shares_join_the_exported_profile() -> None:
    doc = {"Layers": [
        {"Name": "conv", "LayerType": "x", "Inputs": [{"Format/Datatype": "Int8"}],
         "Outputs": [{"Format/Datatype": "Half"}]},
        {"Name": "norm", "LayerType": "x", "Inputs": [{"Format/Datatype": "Half"}],
         "Outputs": [{"Format/Datatype": "Float"}]}], "Bindings": []}
    # trtexec --exportProfile: a count record, then per layer name/timeMs/averageMs/...
    profile = [{"count": 10}, {"name": "conv", "timeMs": 3.0, "averageMs": 0.3,
                               "medianMs": 0.3, "percentage": 75.0},
               {"name": "norm", "timeMs": 1.0, "averageMs": 0.1, "medianMs": 0.1,
                "percentage": 25.0}]
    realised = parse_layer_info(doc, profile)
    assert realised.shares()["int8"] == 0.5 and realised.shares()["fp32"] == 0.5
    assert realised.time_shares()["int8"] == 0.75
    assert realised.metrics()["realised_time_share_fp32"] == 0.25


def test_an_fp16_label_that_ran_no_half_layer_is_a_mismatch() -> None:
    # The public report (roboflow/rf-detr #1453): fp16 asked, 0.00 % half layers.
    all_fp32 = Realised("trtexec 11 layout", [("a", "x", "fp32"), ("b", "x", "fp32")])
    reason = mismatch("fp16", all_fp32, {"fp16": 0.9, "fp32": 0.1})
    assert reason is not None and "0 of its 2 layers in fp16" in reason and "90%" in reason
    half = Realised("trtexec 11 layout", [("a", "x", "fp16"), ("b", "x", "fp32")])
    assert mismatch("fp16", half, {"fp16": 0.9}) is None
    assert "reduced precision" in (mismatch("fp32", half, {"fp32": 1.0}) or "")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_the_emulator_reports_what_the_typed_graph_runs(precision: str,
                                                        tmp_path: Path) -> None:
    pytest.importorskip("modelopt.onnx")
    from sweep.builder.emulate import EmulateBuilder
    from sweep.precision.calibration import CalibrationData
    from sweep.precision.realise import realise
    from tests.support.models import tiny_monolithic_onnx

    rng = np.random.default_rng(0)
    data = CalibrationData({"signal": rng.integers(-3000, 3000, (8, 3200, 1)).astype(np.int32),
                            "state": rng.normal(size=(8, 10)).astype(np.float32)}, 2, "t")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": precision})
    typed = realise(tiny_monolithic_onnx(tmp_path / "m.onnx"), flags, tmp_path / "c", data)
    engine = EmulateBuilder().build(typed.path, flags, tmp_path / "e")
    assert engine.metrics[f"realised_share_{precision}"] > 0
    assert engine.runtime["precision_mismatch"] is None
    record = json.loads((tmp_path / "e" / "realised_precision.json").read_text())
    assert record["source"] == "emulator graph" and record["asked"][precision] > 0
    # int8's rest is ModelOpt's default fp16
    if precision == "int8":
        assert engine.metrics["realised_share_fp16"] > 0
