"""Flag sets realised in the graph, as the builders see them: no precision flag, no pins
(the FP32 keeps are in the typed ONNX), --stronglyTyped on 10.x only, and accepted by
trtexec 11 where weak typing is refused with the typed equivalent spelled out."""

from __future__ import annotations

import pytest

from sweep.builder.trtexec import InferenceOptions, trtexec_args
from sweep.builder.versions import check_flags_for_version
from sweep.errors import FlagSetError
from sweep.flags import FlagSet

SHAPES = {"signal": (2400, 1), "state": (64,)}
SEED_TYPED = {"strongly_typed": True, "precision": "bf16", "tf32": False,
              "layer_precisions": {"LayerNormalization": "fp32", "Softmax": "fp32",
                                   "LogSoftmax": "fp32"}}


def args(flags: FlagSet, version: tuple[int, int, int]) -> list[str]:
    return trtexec_args(flags, "/onnx/typed.onnx", "/work/model.plan", SHAPES,
                        inference=InferenceOptions(skip=True), version=version)


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "fp8"])
def test_typed_flag_sets_build_strongly_typed_with_no_precision_flag(precision: str) -> None:
    flags = FlagSet.from_mapping({**SEED_TYPED, "precision": precision})
    ten, eleven = args(flags, (10, 16, 0)), args(flags, (11, 1, 0))
    assert "--stronglyTyped" in ten and "--stronglyTyped" not in eleven
    for argv in (ten, eleven):
        assert not [a for a in argv if a.split("=")[0] in (
            "--fp16", "--bf16", "--int8", "--fp8", "--best", "--precisionConstraints",
            "--layerPrecisions", "--layerOutputTypes")], argv
        assert "--noTF32" in argv


def test_weak_recipe_on_11_is_refused_with_the_typed_equivalent() -> None:
    weak = FlagSet.from_mapping({"precision": "bf16", "precision_constraints": "obey",
                                 "tf32": False, "layer_precisions": SEED_TYPED[
                                     "layer_precisions"]})
    with pytest.raises(FlagSetError) as info:
        check_flags_for_version(weak, (11, 0, 0))
    assert ("trt.strongly_typed=true trt.precision=bf16 trt.precision_constraints=none "
            "'+trt.layer_precisions={LayerNormalization:fp32,Softmax:fp32,LogSoftmax:fp32}'"
            in str(info.value))
    assert check_flags_for_version(FlagSet.from_mapping(SEED_TYPED), (11, 0, 0)) == []


def test_typed_io_other_than_the_models_is_refused_on_a_gpu_host() -> None:
    with pytest.raises(FlagSetError, match="keep_io_types"):
        args(FlagSet.from_mapping({**SEED_TYPED, "keep_io_types": False}), (11, 1, 0))
