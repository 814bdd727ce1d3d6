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
def test_strongly_typed_rejects_precision_flags(precision):
    with pytest.raises(FlagSetError, match="strongly typed"):
        FlagSet.from_mapping({"strongly_typed": True, "precision": precision})


def test_strongly_typed_rejects_layer_overrides():
    with pytest.raises(FlagSetError, match="per-layer"):
        FlagSet.from_mapping({"strongly_typed": True, "precision_constraints": "obey",
                              "layer_precisions": {"Softmax": "fp32"}})


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
