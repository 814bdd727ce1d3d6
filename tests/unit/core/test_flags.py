import pytest

from sweep.errors import FlagSetError
from sweep.flags import FlagSet


def test_defaults_are_tensorrts_own():
    flags = FlagSet.from_mapping({})
    assert (flags.precision, flags.tf32, flags.opt_level, flags.strongly_typed) == (
        "fp32", True, 3, False)


def test_digest_is_stable_and_sensitive():
    a = FlagSet.from_mapping({"precision": "fp16", "opt_level": 5})
    b = FlagSet.from_mapping({"opt_level": 5, "precision": "fp16"})
    c = FlagSet.from_mapping({"precision": "fp16", "opt_level": 4})
    assert a.digest == b.digest
    assert a.digest != c.digest
    assert len(a.digest) == 12


def test_override_order_matters_for_the_digest():
    one = FlagSet.from_mapping({"precision": "fp16", "precision_constraints": "obey",
                                "layer_precisions": {"Softmax": "fp32", "*": "fp16"}})
    two = FlagSet.from_mapping({"precision": "fp16", "precision_constraints": "obey",
                                "layer_precisions": {"*": "fp16", "Softmax": "fp32"}})
    assert one.digest != two.digest


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "fp8"])
def test_strongly_typed_reduced_precision_is_realised_in_the_graph(precision):
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": precision,
                                  "layer_precisions": {"Softmax": "fp32"}})
    # int8/fp8 name the precision of their unquantised rest (ModelOpt's default fp16)
    rest = "~fp16" if precision in ("int8", "fp8") else ""
    assert flags.in_graph and flags.label == f"typed-{precision}{rest}+1keep-o3"
    assert not FlagSet.from_mapping({"strongly_typed": True}).in_graph


def test_strongly_typed_takes_fp32_keeps_only():
    with pytest.raises(FlagSetError, match="only keep nodes in FP32"):
        FlagSet.from_mapping({"strongly_typed": True, "precision": "bf16",
                              "layer_precisions": {"Softmax": "fp16"}})
    with pytest.raises(FlagSetError, match="output types from the ONNX"):
        FlagSet.from_mapping({"strongly_typed": True, "precision": "bf16",
                              "layer_output_types": {"Softmax": "fp32"}})
    with pytest.raises(FlagSetError, match="precision_constraints=none"):
        FlagSet.from_mapping({"strongly_typed": True, "precision": "bf16",
                              "precision_constraints": "obey",
                              "layer_precisions": {"Softmax": "fp32"}})
    with pytest.raises(FlagSetError, match="nothing to keep"):
        FlagSet.from_mapping({"strongly_typed": True, "layer_precisions": {"Softmax": "fp32"}})


def test_weak_fp8_is_refused_it_would_build_fp32():
    with pytest.raises(FlagSetError, match="no fp8 layer"):
        FlagSet.from_mapping({"precision": "fp8"})


def test_weak_flag_set_spells_its_typed_equivalent():
    weak = FlagSet.from_mapping({"precision": "bf16", "precision_constraints": "obey",
                                 "layer_precisions": {"LayerNormalization": "fp32",
                                                      "Softmax": "fp32"}})
    assert weak.typed_equivalent() == (
        "trt.strongly_typed=true trt.precision=bf16 trt.precision_constraints=none "
        "'+trt.layer_precisions={LayerNormalization:fp32,Softmax:fp32}'")


def test_graph_fields_at_their_defaults_keep_earlier_digests():
    # The digest of the default flag set before the precision stage existed.
    assert FlagSet().digest == FlagSet.from_mapping({"calibration_method": "max"}).digest
    assert FlagSet().digest != FlagSet.from_mapping({"calibration_method": "entropy"}).digest


def test_layer_precisions_need_constraints():
    with pytest.raises(FlagSetError, match="precision_constraints"):
        FlagSet.from_mapping({"precision": "bf16",
                              "layer_precisions": {"LayerNormalization": "fp32"}})


@pytest.mark.parametrize("bad", [{"opt_level": 6}, {"opt_level": -1}, {"precision": "fp64"},
                                 {"precision_constraints": "force"},
                                 {"min_batch": 4, "opt_batch": 2, "max_batch": 8},
                                 {"min_batch": 0}, {"unknown_flag": 1}])
def test_out_of_range_values(bad):
    with pytest.raises(FlagSetError):
        FlagSet.from_mapping(bad)


@pytest.mark.parametrize("pattern", ["a,b", "x:y", "$(rm -rf /)", "a b", "**", "a;b"])
def test_unsafe_layer_patterns(pattern):
    with pytest.raises(FlagSetError, match="not allowed"):
        FlagSet.from_mapping({"precision": "fp16", "precision_constraints": "obey",
                              "layer_precisions": {pattern: "fp32"}})


def test_label_and_params():
    flags = FlagSet.from_mapping({"precision": "bf16", "precision_constraints": "obey",
                                  "tf32": False, "opt_level": 0,
                                  "layer_precisions": {"LayerNormalization": "fp32",
                                                       "Softmax": "fp32"}})
    assert flags.label == "bf16+2pin-o0-notf32"
    params = flags.params()
    assert params["trt.layer_precisions"] == "LayerNormalization:fp32,Softmax:fp32"
    assert params["trt.precision"] == "bf16"
