"""The demo model's ONNX exports stream exactly like its PyTorch offline forward.

For several chunk sizes both contracts are exported to tmp_path and run chunk by chunk in
ONNX Runtime on real (synthesised) speech from the shipped test set, from the all-zero
initial state, at batch 2; the log-probabilities are compared with the PyTorch offline
forward under the same chunk-wise attention mask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from demo import export as ex  # noqa: E402
from demo.model import (  # noqa: E402
    FRAME_SAMPLES,
    DemoConformer,
    ModelConfig,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from tests.support.paths import DEMO  # noqa: E402

CHECKPOINT = DEMO / "demo_checkpoint.pt"
TEST_SET = DEMO / "data" / "demo_test"
Exporter = Callable[[int, str], Path]

# Measured on the shipped checkpoint and demo_test audio (300/400/600 ms, both contracts):
# max |streaming - offline| = 2.4e-5 in log-probability. The two paths differ only by fp32
# reassociation (matmuls over L + C cached keys vs. T masked keys, ONNX Runtime vs. torch
# kernels, features from numpy float64 for skip_preprocessor). 1e-3 is a 40x margin and
# still far below anything a real state bug causes (those show up at >= 1e-1).
LOGPROB_TOL = 1e-3
# numpy (float64, rounded once) vs. the graph's float32 front end: measured 5e-5 on speech.
FEATURE_TOL = 5e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CHECKPOINT.exists():
        return CHECKPOINT
    # Before the first training run: random weights, with a non-zero position bias so the
    # relative-position path is exercised too.
    torch.manual_seed(0)
    model = DemoConformer(ModelConfig())
    for name, param in model.named_parameters():
        if "rel_bias" in name:
            torch.nn.init.normal_(param, std=0.5)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(str(path), model)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Exporter:
    """export(chunk_ms, contract) -> path, each pair exported once per module (~1 s each)."""
    folder = tmp_path_factory.mktemp("onnx")
    cache: dict[tuple[int, str], Path] = {}

    def get(chunk_ms: int, contract: str) -> Path:
        if (chunk_ms, contract) not in cache:
            cache[chunk_ms, contract] = ex.export(checkpoint, chunk_ms, contract,
                                                  folder / f"{contract}_{chunk_ms}.onnx")
        return cache[chunk_ms, contract]

    return get


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> DemoConformer:
    return load_checkpoint(str(checkpoint))[0]


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    """Two int16 utterances of different lengths."""
    if (TEST_SET / "tarred_audio_manifest.json").exists():
        items = ex.read_manifest(TEST_SET, limit=2)
        return [audio for audio, _ in items]
    synth = pytest.importorskip("demo.synth")
    try:
        espeak = synth.find_espeak()
    except SystemExit:
        pytest.skip("no demo test set and no espeak-ng to synthesise speech")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [synth.render(text, 0, i, espeak, tmp)[0]
                for i, text in enumerate(["проверка связи раз два три",
                                          "ваш номер заказа сорок два"])]


def _batch(speech: list[np.ndarray], chunk_samples: int) -> np.ndarray:
    """(2, n_chunks, chunk) with T-one's 300 ms padding, the shorter one zero-extended."""
    chunked = [ex.pad_and_chunk(a, chunk_samples, pad_ms=300) for a in speech]
    n = max(c.shape[0] for c in chunked)
    return np.stack([np.pad(c, ((0, n - c.shape[0]), (0, 0))) for c in chunked])


def _offline(model: DemoConformer, chunks: np.ndarray, chunk_samples: int) -> np.ndarray:
    audio = torch.from_numpy(chunks.reshape(chunks.shape[0], -1).astype(np.float32) / 32767.0)
    with torch.no_grad():
        return model(model.features(audio), chunk_samples // FRAME_SAMPLES).numpy()


@pytest.mark.parametrize("chunk_ms", [300, 400, 600])
def test_exports_stream_like_offline(chunk_ms: int, exported: Exporter, model: DemoConformer,
                                     speech: list[np.ndarray]) -> None:
    chunk_samples = ex.chunk_samples_for(chunk_ms)
    chunks = _batch(speech, chunk_samples)
    offline = _offline(model, chunks, chunk_samples)
    for contract in ex.CONTRACTS:
        path = exported(chunk_ms, contract)
        # fp32 weights and the front end's constants, nothing the tracer copied twice.
        assert path.stat().st_size < 1.1 * 4 * count_parameters(model) + 1e6
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if contract == ex.MONOLITHIC:
            streamed = ex.stream_monolithic(session, chunks)
        else:
            streamed = ex.stream_skip_preprocessor(session, chunks)
        assert streamed.shape == offline.shape == (2, chunks.shape[1] * chunk_ms // 20, 35)
        diff = float(np.max(np.abs(streamed - offline)))
        assert diff < LOGPROB_TOL, f"{contract} at {chunk_ms} ms: max diff {diff}"
        # The batch axis is dynamic and rows are independent: batch 1 gives the same.
        if contract == ex.MONOLITHIC:
            single = ex.stream_monolithic(session, chunks[1:])
            np.testing.assert_allclose(single[0], streamed[1], rtol=0, atol=LOGPROB_TOL)


def test_contract_signatures(exported: Exporter) -> None:
    paths = {c: exported(400, c) for c in ex.CONTRACTS}

    def io(path: Path) -> dict[str, tuple[int, list[object]]]:
        graph = onnx.load(str(path)).graph
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in [*graph.input, *graph.output]}

    f32, i32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32, onnx.TensorProto.INT64
    mono = io(paths[ex.MONOLITHIC])
    state = mono["state"][1][1]
    assert mono == {"signal": (i32, ["batch", 3200, 1]), "state": (f32, ["batch", state]),
                    "logprobs": (f32, ["batch", 20, 35]),
                    "state_next": (f32, ["batch", state])}
    skip = io(paths[ex.SKIP_PREPROCESSOR])
    assert skip["audio_signal"] == (f32, ["batch", 64, 40])
    assert skip["length"] == (i64, ["batch"])
    assert skip["cache_last_chan_len"] == (i64, ["batch"])
    assert skip["cache_last_chan_len_next"] == (i64, ["batch"])
    assert skip["logprobs"] == (f32, ["batch", 20, 35])
    for name in ("cache_last_time", "cache_last_channel"):
        assert skip[name][0] == f32 and skip[name][1][0] == "batch"
        assert skip[f"{name}_next"] == skip[name]
    # The precision sweep pins these by op type: they must exist as real ONNX ops.
    ops = {n.op_type for n in onnx.load(str(paths[ex.MONOLITHIC])).graph.node}
    assert {"LayerNormalization", "Softmax", "LogSoftmax"} <= ops


def test_external_features_equal_monolithic_features(exported: Exporter,
                                                     speech: list[np.ndarray]) -> None:
    """numpy log-mel of each chunk with 80 samples of left context (the seed's stateless
    Triton preprocessing) == the features the monolithic graph computes from its state."""
    proto = onnx.load(str(exported(400, ex.MONOLITHIC)))
    logs = [n for n in proto.graph.node if n.op_type == "Log"]
    assert len(logs) == 1, "the front end's log is the graph's only Log"
    proto.graph.output.append(
        onnx.helper.make_tensor_value_info(logs[0].output[0], onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    chunks = _batch(speech, 3200)
    state = np.zeros((2, int(ex._metadata(session)["state_size"])), np.float32)
    external = ex.stream_features(chunks)
    for i in range(chunks.shape[1]):
        _, state, inner = session.run(None, {"signal": chunks[:, i, :, None].astype(np.int32),
                                             "state": state})
        np.testing.assert_allclose(inner, external[i], rtol=0, atol=FEATURE_TOL)


@pytest.mark.parametrize("chunk_ms", [0, 10, 410, 250, -400])
def test_chunk_not_whole_frames_is_rejected(chunk_ms: int, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    with pytest.raises(ex.ChunkError, match="whole number of 20 ms"):
        ex.chunk_samples_for(chunk_ms)
    with pytest.raises(SystemExit) as exc:
        ex.main(["--chunk-ms", str(chunk_ms), "--out", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2
    assert "whole number of 20 ms output frames" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_autocast_export_is_typed_like_t_ones(checkpoint: Path, tmp_path: Path,
                                                   speech: list[np.ndarray]) -> None:
    """T-one's own export style: mixed precision typed by the exporter, LayerNorm in fp32,
    an FP16 state; it streams like the fp32 export to within fp16 rounding."""
    path = ex.export(checkpoint, 400, ex.MONOLITHIC, tmp_path / "fp16.onnx", fp16_autocast=True)
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = proto.graph
    io = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output)}
    assert io == {"signal": onnx.TensorProto.INT32, "state": onnx.TensorProto.FLOAT16,
                  "logprobs": onnx.TensorProto.FLOAT, "state_next": onnx.TensorProto.FLOAT16}
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input)}
    types.update({i.name: i.data_type for i in g.initializer})
    norms = [n for n in g.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 36 and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in norms)
    half_matmuls = [n for n in g.node if n.op_type == "MatMul"
                    and types.get(n.input[0]) == onnx.TensorProto.FLOAT16]
    assert len(half_matmuls) >= 40  # the encoder computes in fp16
    fp16 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(ex.export(checkpoint, 400, ex.MONOLITHIC,
                                              tmp_path / "fp32.onnx")),
                                providers=["CPUExecutionProvider"])
    chunks = _batch(speech, ex.chunk_samples_for(400))
    a, b = ex.stream_monolithic(fp16, chunks), ex.stream_monolithic(fp32, chunks)
    # fp16 storage moves log-probabilities by ~1e-2 on confident frames; a state bug by >> 1.
    assert np.median(np.abs(np.exp(a) - np.exp(b))) < 1e-3
    assert [ex.greedy_decode(x) for x in a] == [ex.greedy_decode(x) for x in b]
