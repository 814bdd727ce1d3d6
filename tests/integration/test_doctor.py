"""The parity doctor against real tritonserver deployments, mis-configured on purpose.

One server per configuration, shared by its tests (module fixtures). Client-side
mistakes (left context, scaling) are streamed by a mis-configured client against a correct
server; server-side ones (fp16 features, a 300 ms export) are deployed. Each must be
diagnosed with the right cause; a correct fp32 deployment must show no difference.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sweep.data.manifest import Utterance, load_manifest
from sweep.doctor.cli import Deployment, deployed, interface_for, load_model
from sweep.doctor.diagnosis import Diagnosis, diagnose
from sweep.doctor.report import markdown
from sweep.doctor.served import TritonTarget
from sweep.errors import DoctorError
from sweep.evaluate.variant import ClientVariant
from tests.support.paths import DEMO, ROOT
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration

TINY = DEMO / "data" / "demo_tiny"
FP32 = {"tf32": False}


@pytest.fixture(scope="module")
def utterances() -> list[Utterance]:
    return load_manifest(TINY)[:2]


@pytest.fixture(scope="module")
def ensemble_model():
    return load_model("demo_skip_preprocessor")


@pytest.fixture(scope="module")
def ensemble_url(ensemble_model, tmp_path_factory) -> Iterator[str]:
    with deployed(ensemble_model, Deployment(FP32),
                  tmp_path_factory.mktemp("ensemble")) as endpoint:
        yield endpoint.grpc_url


def _diagnose(url: str, model, utterances, variant: ClientVariant | None = None,
              **kw) -> Diagnosis:
    with TritonTarget(url, model.entry_model, model, timeout_s=10.0,
                      variant=variant) as target:
        return diagnose(target, model, utterances, **kw)


def _named(d: Diagnosis) -> list[str]:
    return [run.cause.key.split("+")[-1] for run in d.chain]


def test_correct_fp32_deployment_matches(ensemble_url, ensemble_model, utterances):
    d = _diagnose(ensemble_url, ensemble_model, utterances)
    assert d.verdict == "match", markdown(d)
    assert d.baseline.differing == 0
    assert d.baseline.transcript_wer == 0.0
    assert d.baseline.comparison.argmax_agreement == 1.0
    assert d.baseline.comparison.feature_max_abs == 0.0  # fetched from `preprocessing`
    assert d.chain == []
    assert "No difference" in markdown(d)


def test_client_without_left_context_is_diagnosed(ensemble_url, ensemble_model, utterances):
    d = _diagnose(ensemble_url, ensemble_model, utterances,
                  ClientVariant(left_context_samples=0))
    assert _named(d) == ["left_context"], markdown(d)
    assert d.verdict == "explained"
    assert d.explained(d.chain[0]) > 0.99
    # The served features differ from the reference at every chunk after the first.
    feature_max_abs = d.baseline.comparison.feature_max_abs
    assert feature_max_abs is not None and feature_max_abs > 1.0


def test_client_with_wrong_scaling_is_diagnosed(ensemble_url, ensemble_model, utterances):
    d = _diagnose(ensemble_url, ensemble_model, utterances, ClientVariant(scale=1.0))
    assert _named(d) == ["input_scaling"], markdown(d)
    best = d.chain[0]
    assert best.cause.scale == 1.0
    assert best.differing == 0 and d.baseline.differing > 0  # transcripts explained too
    assert d.wer_gap_explained(best) == pytest.approx(1.0)


def test_fp16_features_deployment_is_diagnosed(ensemble_model, utterances, tmp_path):
    with deployed(ensemble_model, Deployment(FP32, fp16_features=True), tmp_path) as endpoint:
        d = _diagnose(endpoint.grpc_url, ensemble_model, utterances)
    assert _named(d) == ["fp16_features"], markdown(d)
    feature_max_abs = d.baseline.comparison.feature_max_abs  # fp16 rounding of log-mel
    assert feature_max_abs is not None and 0 < feature_max_abs < 0.05
    assert d.chain[0].comparison.kl == 0.0


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[int, Path]:
    """The same weights at 400 and 300 ms (the shipped checkpoint, else random weights)."""
    pytest.importorskip("torch")
    from demo import export as ex
    from demo.model import DemoConformer, ModelConfig, save_checkpoint

    folder = tmp_path_factory.mktemp("exports")
    checkpoint = DEMO / "demo_checkpoint.pt"
    if not checkpoint.exists():
        import torch

        torch.manual_seed(0)
        checkpoint = folder / "random.pt"
        save_checkpoint(str(checkpoint), DemoConformer(ModelConfig()))
    return {ms: ex.export(checkpoint, ms, "skip_preprocessor", folder / f"skip_{ms}.onnx")
            for ms in (400, 300)}


def test_300ms_deployment_against_400ms_reference_is_diagnosed(
        ensemble_model, utterances, exports, tmp_path):
    reference = dataclasses.replace(ensemble_model, onnx_path=exports[400])
    served = interface_for(reference, exports[300])
    assert served.chunk_ms == 300
    with deployed(served, Deployment(FP32), tmp_path) as endpoint, \
            TritonTarget(endpoint.grpc_url, "ensemble", reference) as target:
        assert target.chunk_ms == 300  # read from the served input shape
        unquantified = diagnose(target, reference, utterances)
        d = diagnose(target, reference, utterances, alt_exports={300: exports[300]})
    assert unquantified.verdict == "chunk duration (not quantified)"
    assert "--alt-onnx 300=" in markdown(unquantified)
    assert _named(d) == ["chunk_duration"], markdown(d)
    assert d.chain[0].comparison.kl == 0.0


def test_monolithic_scaling(tmp_path, utterances):
    model = load_model("demo_monolithic")
    with deployed(model, Deployment(FP32), tmp_path) as endpoint:
        right = _diagnose(endpoint.grpc_url, model, utterances)
        wrong = _diagnose(endpoint.grpc_url, model, utterances, ClientVariant(scale=32767.0))
    assert right.verdict == "match", markdown(right)
    assert right.baseline.comparison.feature_max_abs is None  # in-graph features
    assert _named(wrong) == ["input_scaling"], markdown(wrong)
    assert "left_context" in wrong.not_applicable


# -- bad input ---------------------------------------------------------------------------


def test_server_down_fails_fast_with_a_clear_message(tmp_path):
    from sweep.infra.ports import free_port

    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.doctor", "--url", f"127.0.0.1:{free_port()}",
         "--timeout-s", "2", "--no-mlflow", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "no Triton server answers at 127.0.0.1:" in proc.stderr
    assert time.monotonic() - t0 < 30


def test_interface_mismatch_is_refused(ensemble_url):
    monolithic = load_model("demo_monolithic")
    with pytest.raises(DoctorError, match="does not match the reference export"):
        TritonTarget(ensemble_url, "ensemble", monolithic, timeout_s=5.0)
    with pytest.raises(DoctorError, match=r"not ready.*ensemble"):
        TritonTarget(ensemble_url, "nope", monolithic, timeout_s=5.0)


def _wav(path: Path, seconds: float) -> None:
    samples = (np.sin(np.arange(int(8000 * seconds)) * 0.05) * 3000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())


def test_utterances_shorter_than_a_chunk(ensemble_url, ensemble_model, utterances, tmp_path):
    _wav(tmp_path / "short.wav", 0.2)
    (tmp_path / "tarred_audio_manifest.json").write_text(
        '{"audio_filepath": "short.wav", "text": "да"}\n', encoding="utf-8")
    short = load_manifest(tmp_path)
    with pytest.raises(DoctorError, match="shorter than one chunk"):
        _diagnose(ensemble_url, ensemble_model, short)
    d = _diagnose(ensemble_url, ensemble_model, [*short, utterances[0]])
    assert [u.id for u in d.utterances] == [utterances[0].id]
    assert d.short_utterances == ["short (200 ms)"]
    assert "shorter than one chunk: short (200 ms)" in markdown(d)


def test_cli_writes_report_and_mlflow_run(ensemble_url, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.doctor.cli import EXPERIMENT, main

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    rc = main(["--url", ensemble_url, "--model", "demo_skip_preprocessor", "--limit", "1",
               "--client-left-context", "0",
               "--out", str(tmp_path / "out"), "--tracking-uri", uri,
               "--artifact-root", str(tmp_path / "mlruns" / "artifacts"), "--quiet"])
    assert rc == 1  # differences found
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "left-context padding" in report and "divergence.png" in report
    assert (tmp_path / "out" / "divergence.png").stat().st_size > 10_000
    client = MlflowClient(uri)
    [run] = client.search_runs([experiment_id(client, EXPERIMENT)])
    assert run.data.tags["cause"] == "left_context"
    assert run.data.metrics["explained"] > 0.99
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "report.md", "divergence.png", "chunks.csv"}


def test_decode_pool_fed_by_the_streamer(ensemble_url, ensemble_model, utterances):
    """Beam search off the streaming path: each utterance is submitted from GrpcStreamer's
    on_done as it finishes, and the texts equal in-process decoding of the same log-probs."""
    from sweep.evaluate.decode import DecodePool, DecoderSpec
    from sweep.evaluate.stream import GrpcStreamer

    spec = DecoderSpec("beam", str(DEMO / "lm_3gram.arpa"), beam_width=64)
    with DecodePool(spec, workers=2) as pool:
        run = GrpcStreamer(ensemble_model, ensemble_url, "ensemble", streams=2).run(
            utterances, lambda r: pool.submit(r.utterance.id, r.logprobs))
        texts = pool.results()
    decoder = spec.build()
    assert texts == {r.utterance.id: decoder.decode(r.logprobs) for r in run.results}
