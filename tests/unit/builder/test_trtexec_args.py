"""trtexec_args as data in, data out: the flag matrix, version rules, layer resolution."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from sweep.builder.trtexec import (
    InferenceOptions,
    TrtexecBuilder,
    check_flags_for_version,
    onnx_input_dims,
    resolve_layers,
    trtexec_args,
)
from sweep.errors import DockerUnavailableError, FlagSetError, ModelError
from sweep.flags import FlagSet

SHAPES = {"signal": (2400, 1), "state": (64,)}
NO_INFERENCE = InferenceOptions(skip=True)


def flags(**kw: object) -> FlagSet:
    return FlagSet.from_mapping(kw)


def args(f: FlagSet, **kw: object) -> list[str]:
    kw.setdefault("inference", NO_INFERENCE)
    return trtexec_args(f, "/onnx/m.onnx", "/work/model.plan", SHAPES, **kw)  # type: ignore[arg-type]


def tiny_onnx(path: Path, *, dynamic_inner: bool = False) -> Path:
    """signal INT32 (B,2400,1) + state FP16 (B,64) + len INT64 (B,); two LayerNorms, a
    Softmax and a LogSoftmax with exporter-style names."""
    inputs = [
        helper.make_tensor_value_info("signal", TensorProto.INT32, ["B", 2400, 1]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT16,
                                      ["B", "T" if dynamic_inner else 64]),
        helper.make_tensor_value_info("len", TensorProto.INT64, ["B"]),
    ]
    outputs = [helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["B", 64])]
    nodes = [
        helper.make_node("Cast", ["state"], ["s32"], name="/pre/Cast", to=TensorProto.FLOAT),
        helper.make_node("LayerNormalization", ["s32", "g", "b"], ["n0"],
                         name="/enc/layers.0/norm/LayerNormalization"),
        helper.make_node("LayerNormalization", ["n0", "g", "b"], ["n1"],
                         name="/enc/layers.1/norm/LayerNormalization"),
        helper.make_node("Softmax", ["n1"], ["p"], name="/dec/Softmax"),
        helper.make_node("LogSoftmax", ["p"], ["logprobs"], name="/dec/LogSoftmax"),
    ]
    init = [helper.make_tensor("g", TensorProto.FLOAT, [64], [1.0] * 64),
            helper.make_tensor("b", TensorProto.FLOAT, [64], [0.0] * 64)]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


# -- the flag matrix --------------------------------------------------------------------
def test_defaults_are_tensorrt_defaults_spelled_out() -> None:
    assert args(flags()) == [
        "--onnx=/onnx/m.onnx", "--saveEngine=/work/model.plan",
        "--builderOptimizationLevel=3",
        "--minShapes=signal:1x2400x1,state:1x64",
        "--optShapes=signal:16x2400x1,state:16x64",
        "--maxShapes=signal:16x2400x1,state:16x64",
        "--skipInference",
    ]


@pytest.mark.parametrize(("precision", "flag"), [
    ("fp16", "--fp16"), ("bf16", "--bf16"), ("int8", "--int8")])
def test_precision_flags(precision: str, flag: str) -> None:
    out = args(flags(precision=precision))
    assert flag in out
    assert "--stronglyTyped" not in out
    others = {"--fp16", "--bf16", "--int8", "--fp8"} - {flag}
    assert not others & set(out)


def test_fp32_has_no_precision_flag() -> None:
    assert not {"--fp16", "--bf16", "--int8", "--fp8"} & set(args(flags()))


def test_strongly_typed_tone_style() -> None:
    # T-one's documented build: --stronglyTyped --builderOptimizationLevel=5.
    out = args(flags(strongly_typed=True, opt_level=5, min_batch=1, opt_batch=64,
                     max_batch=64))
    assert "--stronglyTyped" in out
    assert "--builderOptimizationLevel=5" in out
    assert "--optShapes=signal:64x2400x1,state:64x64" in out
    assert not any(a.startswith("--precisionConstraints") for a in out)


def test_strongly_typed_flag_dropped_on_tensorrt_11() -> None:
    f = flags(strongly_typed=True)
    assert "--stronglyTyped" in args(f, version=(10, 9, 0))
    assert "--stronglyTyped" not in args(f, version=(11, 0, 0))


def test_no_tf32() -> None:
    assert "--noTF32" in args(flags(tf32=False))
    assert "--noTF32" not in args(flags())


def test_seed_best_build_bf16_with_fp32_pins() -> None:
    # The seed's best engine: bf16, LayerNormalization/Softmax/LogSoftmax in fp32,
    # --precisionConstraints=obey, --noTF32, level 0.
    pins = {"LayerNormalization": "fp32", "Softmax": "fp32", "LogSoftmax": "fp32"}
    f = flags(precision="bf16", precision_constraints="obey", tf32=False, opt_level=0,
              layer_precisions=pins, layer_output_types=pins)
    resolved = {"/enc/layers.0/norm/LayerNormalization": "fp32",
                "/enc/layers.1/norm/LayerNormalization": "fp32",
                "/dec/Softmax": "fp32", "/dec/LogSoftmax": "fp32"}
    out = args(f, layer_precisions=resolved, layer_output_types=resolved)
    spec = ("/enc/layers.0/norm/LayerNormalization:fp32,/enc/layers.1/norm/LayerNormalization:"
            "fp32,/dec/Softmax:fp32,/dec/LogSoftmax:fp32")
    assert out == [
        "--onnx=/onnx/m.onnx", "--saveEngine=/work/model.plan", "--bf16", "--noTF32",
        "--precisionConstraints=obey", f"--layerPrecisions={spec}",
        f"--layerOutputTypes={spec}", "--builderOptimizationLevel=0",
        "--minShapes=signal:1x2400x1,state:1x64", "--optShapes=signal:16x2400x1,state:16x64",
        "--maxShapes=signal:16x2400x1,state:16x64", "--skipInference",
    ]


def test_prefer_constraints() -> None:
    f = flags(precision="fp16", precision_constraints="prefer",
              layer_precisions={"/dec/Softmax": "fp32"})
    out = args(f, layer_precisions={"/dec/Softmax": "fp32"})
    assert "--precisionConstraints=prefer" in out
    assert "--layerPrecisions=/dec/Softmax:fp32" in out
    assert not any(a.startswith("--layerOutputTypes") for a in out)


def test_unresolved_patterns_are_refused() -> None:
    # trtexec knows layer names only: an op-type pattern passed through would pin nothing.
    f = flags(precision="fp16", precision_constraints="obey",
              layer_precisions={"LayerNormalization": "fp32"})
    with pytest.raises(FlagSetError, match="resolve"):
        args(f)


def test_fp8_layer_precision_is_not_trtexec_grammar() -> None:
    f = flags(precision="fp16", precision_constraints="obey", layer_precisions={"/x": "fp8"})
    with pytest.raises(FlagSetError, match="fp8"):
        args(f, layer_precisions={"/x": "fp8"})


def test_comma_in_layer_name_refused() -> None:
    f = flags(precision="fp16", precision_constraints="obey", layer_precisions={"/x": "fp32"})
    with pytest.raises(FlagSetError, match="separator"):
        args(f, layer_precisions={"a,b": "fp32"})


def test_batch_only_input_gets_batch_shape() -> None:
    out = trtexec_args(flags(min_batch=2, opt_batch=4, max_batch=8), "m.onnx", "e.plan",
                       {"len": ()}, inference=NO_INFERENCE)
    assert "--minShapes=len:2" in out and "--optShapes=len:4" in out
    assert "--maxShapes=len:8" in out


def test_timing_cache_and_layer_info() -> None:
    out = args(flags(), timing_cache_path="/cache/t.cache", layer_info_path="/work/l.json")
    assert "--timingCacheFile=/cache/t.cache" in out
    assert "--profilingVerbosity=detailed" in out
    assert "--exportLayerInfo=/work/l.json" in out
    assert not any("timingCache" in a for a in args(flags(timing_cache=False),
                                                    timing_cache_path="/cache/t.cache"))


def test_inference_pass_defaults() -> None:
    out = trtexec_args(flags(opt_batch=8, max_batch=16), "m.onnx", "e.plan", SHAPES)
    assert "--shapes=signal:8x2400x1,state:8x64" in out
    assert "--useSpinWait" in out and "--duration=3" in out and "--warmUp=500" in out
    assert "--skipInference" not in out and "--noDataTransfers" not in out


def test_inference_options() -> None:
    inf = InferenceOptions(duration_s=10, warmup_ms=0, spin_wait=False, data_transfers=False,
                           cuda_graph=True, batch=1)
    out = trtexec_args(flags(), "m.onnx", "e.plan", SHAPES, inference=inf)
    assert "--shapes=signal:1x2400x1,state:1x64" in out
    assert {"--duration=10", "--warmUp=0", "--noDataTransfers", "--useCudaGraph"} <= set(out)
    assert "--useSpinWait" not in out


def test_inference_batch_outside_profile() -> None:
    with pytest.raises(FlagSetError, match="outside"):
        trtexec_args(flags(), "m.onnx", "e.plan", SHAPES,
                     inference=InferenceOptions(batch=32))


def test_extra_options() -> None:
    f = flags(extra={"memPoolSize": "workspace:4096", "sparsity": "disable"})
    out = args(f)
    assert "--memPoolSize=workspace:4096" in out and "--sparsity=disable" in out
    assert "--versionCompatible" in args(flags(extra={"versionCompatible": "true"}))


@pytest.mark.parametrize("key", ["fp16", "saveEngine", "stronglyTyped", "layerPrecisions"])
def test_extra_cannot_override_managed(key: str) -> None:
    with pytest.raises(FlagSetError, match="sets it"):
        args(flags(extra={key: "x"}))


def test_extra_rejects_odd_values() -> None:
    with pytest.raises(FlagSetError):
        args(flags(extra={"memPoolSize": "workspace:1;rm -rf /"}))


def test_no_inputs() -> None:
    with pytest.raises(ModelError):
        trtexec_args(flags(), "m.onnx", "e.plan", {})


def test_input_name_with_comma() -> None:
    with pytest.raises(ModelError):
        trtexec_args(flags(), "m.onnx", "e.plan", {"a,b": (3,)}, inference=NO_INFERENCE)


def test_every_argument_is_one_list_item() -> None:
    # No shell string anywhere: each option is exactly one argv entry, no spaces/quotes.
    pins = {"/dec/Softmax": "fp32"}
    f = flags(precision="fp16", precision_constraints="obey", layer_precisions=pins)
    for item in trtexec_args(f, "/onnx/m.onnx", "/work/e.plan", SHAPES,
                             layer_precisions=pins):
        assert item.startswith("--") and " " not in item and "'" not in item


# -- version rules ----------------------------------------------------------------------
def test_version_matrix() -> None:
    weak_bf16 = flags(precision="bf16")
    typed = flags(strongly_typed=True)
    pins = flags(precision="fp16", precision_constraints="obey",
                 layer_precisions={"/dec/Softmax": "fp32"})
    assert check_flags_for_version(typed, (10, 9, 0)) == []
    assert check_flags_for_version(weak_bf16, (10, 2, 0)) == []
    assert check_flags_for_version(flags(precision="fp16"), (8, 6, 1)) == []
    with pytest.raises(FlagSetError, match=r"8\.6"):
        check_flags_for_version(flags(), (8, 5, 3))
    with pytest.raises(FlagSetError, match=r"10\.0"):
        check_flags_for_version(typed, (8, 6, 1))
    with pytest.raises(FlagSetError, match="bf16"):
        check_flags_for_version(weak_bf16, (8, 6, 1))
    # 10.12 deprecates weak typing: still builds, with a note.
    notes = check_flags_for_version(pins, (10, 12, 0))
    assert any("10.12" in n for n in notes)
    # 11.0 removes it.
    assert check_flags_for_version(typed, (11, 0, 0)) == []
    with pytest.raises(FlagSetError, match="Weak typing is no longer supported"):
        check_flags_for_version(flags(precision="fp16"), (11, 0, 0))
    # fp32 without pins needs nothing of weak typing: it builds on 11 (the default image),
    # strongly typed, and the note says so.
    assert any("strongly typed" in n for n in check_flags_for_version(flags(), (11, 0, 0)))
    with pytest.raises(FlagSetError, match="--fp16") as info:
        check_flags_for_version(pins, (11, 1, 0))
    assert "kOBEY_PRECISION_CONSTRAINTS" in str(info.value)


def test_int8_note() -> None:
    assert any("placeholder" in n for n in check_flags_for_version(flags(precision="int8"),
                                                                    (10, 9, 0)))


def test_version_checked_inside_trtexec_args() -> None:
    with pytest.raises(FlagSetError):
        args(flags(precision="fp16"), version=(11, 0, 0))


# -- ONNX-derived inputs ----------------------------------------------------------------
def test_onnx_input_dims(tmp_path: Path) -> None:
    dims = onnx_input_dims(tiny_onnx(tmp_path / "m.onnx"))
    assert dims == {"signal": (2400, 1), "state": (64,), "len": ()}


def test_onnx_dynamic_inner_dim_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="dynamic non-batch"):
        onnx_input_dims(tiny_onnx(tmp_path / "m.onnx", dynamic_inner=True))


def test_resolve_layers_expands_op_types(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "m.onnx")
    f = flags(precision="bf16", precision_constraints="obey",
              layer_precisions={"LayerNormalization": "fp32", "/enc/layers.1/*": "bf16"},
              layer_output_types={"Softmax": "fp32"})
    precisions, outputs = resolve_layers(path, f)
    # Later patterns override earlier ones, as in trtexec.
    assert precisions == {"/enc/layers.0/norm/LayerNormalization": "fp32",
                          "/enc/layers.1/norm/LayerNormalization": "bf16"}
    assert outputs == {"/dec/Softmax": "fp32"}


def test_resolve_layers_unmatched(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "m.onnx")
    f = flags(precision="fp16", precision_constraints="obey",
              layer_precisions={"LayerNorm": "fp32"})
    with pytest.raises(FlagSetError, match="LayerNorm"):
        resolve_layers(path, f)


def test_builder_command_from_onnx(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "m.onnx")
    f = flags(precision="fp16", precision_constraints="obey", tf32=False,
              layer_precisions={"LayerNormalization": "fp32"})
    cmd = TrtexecBuilder(image="unused").command(path, f, (10, 9, 0))
    assert cmd[0] == "/usr/src/tensorrt/bin/trtexec"
    assert cmd[1] == "--onnx=/onnx/m.onnx"
    assert "--minShapes=signal:1x2400x1,state:1x64,len:1" in cmd
    # Each pinned node also pins the further layers TensorRT's ONNX parser makes of it.
    assert ("--layerPrecisions=/enc/layers.0/norm/LayerNormalization:fp32,"
            "/enc/layers.0/norm/LayerNormalization_*:fp32,"
            "/enc/layers.1/norm/LayerNormalization:fp32,"
            "/enc/layers.1/norm/LayerNormalization_*:fp32") in cmd
    assert "--timingCacheFile=/cache/timing.cache" in cmd
    assert "--exportLayerInfo=/work/layers.json" in cmd


def test_builder_does_nothing_until_called_then_needs_docker(tmp_path: Path) -> None:
    builder = TrtexecBuilder(docker_base_url=f"unix://{tmp_path}/no-docker.sock")
    assert builder.name == "trtexec"
    with pytest.raises(DockerUnavailableError, match="dockerd"):
        builder.version()


def test_timing_pass_means_the_same_on_10_and_11() -> None:
    # The sweep's default: transfers in, no CUDA graph, spin-wait (what Triton pays per chunk).
    ten = args(flags(), version=(10, 16, 0), inference=InferenceOptions())
    eleven = args(flags(strongly_typed=True), version=(11, 4, 0), inference=InferenceOptions())
    assert "--useSpinWait" in ten and "--noDataTransfers" not in ten
    assert "--useCudaGraph" not in ten
    # 11 turned transfers off and CUDA graphs on by default: say so explicitly.
    assert "--includeDataTransfers" in eleven and "--noCudaGraph" in eleven
    assert not {"--useSpinWait", "--noDataTransfers", "--useCudaGraph"} & set(eleven)
    pure = args(flags(strongly_typed=True), version=(11, 4, 0),
                inference=InferenceOptions(data_transfers=False, cuda_graph=True,
                                           spin_wait=False))
    assert "--noSpinWait" in pure and "--includeDataTransfers" not in pure
    assert "--noCudaGraph" not in pure
