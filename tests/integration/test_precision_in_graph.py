"""Flag sets realised in the graph, end to end on the embedded default: the typed ONNX is
made (AutoCast, Q/DQ from streamed calibration), logged, built by the emulator, served by
the real tritonserver and scored; and planned for a GPU host with the dry run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import onnx
import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import tags as tag
from tests.support.models import demo_reference_wer
from tests.support.paths import ROOT
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration
pytest.importorskip("modelopt.onnx", reason="the precision stage needs ModelOpt "
                    "(bash scripts/setup.sh --dev installs it)")

KEPT = {"LayerNormalization", "Softmax", "LogSoftmax"}


def job_runs(tmp: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    runs = client.search_runs([experiment_id(client, "trt-sweep")])
    return sorted((r for r in runs if r.data.tags.get(tag.KIND) == "job"),
                  key=lambda r: int(r.data.params["job.num"]))


def download(tmp: Path, run_id: str, path: str) -> Path:
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    return Path(client.download_artifacts(run_id, path, str(tmp / f"dl-{run_id}")))


def output_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (
        *inferred.graph.value_info, *inferred.graph.output)}
    return {n.name: types.get(n.output[0], 0) for n in model.graph.node}


def test_typed_precisions_sweep_on_the_embedded_default(tmp_path: Path) -> None:
    sweep = run_sweep(["-m", "trt.strongly_typed=true", "trt.precision=fp16,bf16,int8",
                       "dataset=demo_tiny", "eval.streams=4"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    runs = job_runs(tmp_path)
    assert [r.data.params["trt.precision"] for r in runs] == ["fp16", "bf16", "int8"]
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        metrics = run.data.metrics
        assert {"wer", "cer", "frame_disagreement", "calibration_samples"} <= set(metrics)
        typed = onnx.load(str(download(tmp_path, run.info.run_id, "typed/model.onnx")))
        ops = {n.op_type for n in typed.graph.node}
        stored = set(output_types(typed).values())
        if run.data.params["trt.precision"] == "int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        else:
            wanted = onnx.TensorProto.FLOAT16 if run.data.params["trt.precision"] == "fp16" \
                else onnx.TensorProto.BFLOAT16
            assert wanted in stored
        table = json.loads(download(tmp_path, run.info.run_id,
                                    "typed/precisions.json").read_text())
        assert len(table) == len(typed.graph.node)
        # What the executed graph runs in: its label's precision, checked.
        precision = run.data.params["trt.precision"]
        assert metrics[f"realised_share_{precision}"] > 0.0
        assert "precision_mismatch" not in run.data.tags
        download(tmp_path, run.info.run_id, "engine/realised_precision.json")
    # Quantisation is visible against the fp32 model, frame by frame.
    int8 = runs[2].data.metrics
    assert int8["frame_disagreement"] > 0.0
    # int8's unquantised rest is ModelOpt's default, fp16.
    assert int8["realised_share_fp16"] > 0.0


def test_the_seeds_recipe_as_a_typed_onnx_beside_its_weak_build(tmp_path: Path) -> None:
    sweep = run_sweep(["-m", "trt=seed_best,seed_best_typed", "dataset=demo_tiny",
                       "eval.streams=4"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    weak, typed_run = job_runs(tmp_path)
    assert weak.data.params["trt.strongly_typed"] == "False"
    assert typed_run.data.params["trt.strongly_typed"] == "True"
    for run in (weak, typed_run):
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        # The seed's recipe moves few words: within 5 points of the fp32 reference.
        assert 0.0 <= run.data.metrics["wer"] <= demo_reference_wer() + 0.05
    typed = onnx.load(str(download(tmp_path, typed_run.info.run_id, "typed/model.onnx")))
    kinds = output_types(typed)
    kept = [n for n in typed.graph.node if n.op_type in KEPT]
    assert kept and all(kinds[n.name] == onnx.TensorProto.FLOAT for n in kept)
    assert onnx.TensorProto.BFLOAT16 in set(kinds.values())


def test_dry_run_plans_trtexec_commands_for_tensorrt_10_and_11(tmp_path: Path) -> None:
    tables = json.loads((ROOT / "tests" / "standins" / "trtexec_options.json").read_text())
    removed_in_11 = set(tables["differences"]["only_in_10.16"])
    for version, mode in (("11.4", "11"), ("10.16", "10")):
        tmp = tmp_path / mode
        sweep = run_sweep(["builder=trtexec", "builder.dry_run=true",
                           f"builder.tensorrt_version={version}", "trt=seed_best_typed",
                           "dataset=demo_tiny"], tmp)
        assert sweep.returncode == 0, sweep.stderr[-4000:]
        (run,) = job_runs(tmp)
        assert run.info.status == "FINISHED" and run.data.tags["dry_run"] == "true"
        assert "wer" not in run.data.metrics and "latency_p99_ms" not in run.data.metrics
        argv = shlex.split(download(tmp, run.info.run_id, "engine/trtexec.cmd").read_text())
        options = {a.split("=")[0] for a in argv[1:]}
        if mode == "11":
            assert not options & removed_in_11, options & removed_in_11
            assert "--stronglyTyped" not in options
        else:
            assert "--stronglyTyped" in options
        assert not options & {"--bf16", "--fp16", "--layerPrecisions"}
        config = download(tmp, run.info.run_id, "model_repository/model/config.pbtxt")
        assert "KIND_GPU" in config.read_text()
        download(tmp, run.info.run_id, "typed/model.onnx")


def test_an_exporter_typed_fp16_onnx_is_served_as_it_was_typed(tmp_path: Path) -> None:
    """T-one's own style of file (fp16 autocast, fp32 LayerNorm, FP16 state): strongly
    typed with no precision of the sweep's, its FP16 state crosses Triton as FP16."""
    sweep = run_sweep(["model=demo_monolithic_fp16", "trt.strongly_typed=true",
                       "trt.precision=fp32", "dataset=demo_tiny"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    (run,) = job_runs(tmp_path)
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert abs(run.data.metrics["wer"] - demo_reference_wer()) <= 0.05
    config = download(tmp_path, run.info.run_id, "model_repository/model/config.pbtxt")
    text = config.read_text()
    assert 'name: "state"\n  data_type: TYPE_FP16' in text, text


def test_dry_run_on_11_4_plans_routes_searches_and_int8_remainders_the_standin_accepts(
        tmp_path: Path) -> None:
    from tests.unit.builder.test_build_routes import local
    from tests.unit.builder.test_trtexec_standin import trtexec

    search = ["builder=trtexec", "builder.dry_run=true", "builder.tensorrt_version=11.4",
              "trt.strongly_typed=true", "trt.precision=int8", "dataset=demo_tiny",
              "trt.tune_build_routes=fast", "trt.tuning_expr='-match_ragged_mha=[on|off]'"]
    sweep = run_sweep(["-m", *search, "trt.high_precision_dtype=fp32,fp16,bf16"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    runs = job_runs(tmp_path)
    assert [r.data.params["trt.high_precision_dtype"] for r in runs] == ["fp32", "fp16", "bf16"]
    for run in runs:
        argv = shlex.split(download(tmp_path, run.info.run_id, "engine/trtexec.cmd")
                           .read_text())
        assert "--tuneBuildRoutes=-match_ragged_mha=[on|off]" in argv
        onnx_file = download(tmp_path, run.info.run_id, "typed/model.onnx")
        work = tmp_path / f"standin-{run.info.run_id}"
        (work / "onnx").mkdir(parents=True)
        (work / "onnx" / "model.onnx").write_bytes(onnx_file.read_bytes())
        refs = next((tmp_path / "tuning").iterdir())
        result = trtexec(work, "110400", *local(argv[1:], work, refs))
        assert result.rc == 0, result.text
    autotune = run_sweep([*search[:6], "trt.qdq_placement=autotune"], tmp_path / "autotune")
    assert autotune.returncode == 0, autotune.stderr[-4000:]
    assert "modelopt.onnx.quantization.autotune" in autotune.stderr + autotune.stdout
    old = run_sweep([*search[:1], "builder.dry_run=true", "builder.tensorrt_version=10.16",
                     "trt.strongly_typed=true", "trt.build_route='-match_ragged_mha=off'",
                     "dataset=demo_tiny"], tmp_path / "old")
    assert old.returncode != 0
    (run,) = job_runs(tmp_path / "old")
    assert run.info.status == "FAILED" and "TensorRT 11.1" in run.data.tags["error"]
