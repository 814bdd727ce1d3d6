"""The doctor's measures: time alignment, KL, word errors, and the causes per contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.data.manifest import Utterance
from sweep.doctor.causes import known_causes
from sweep.doctor.compare import compare, differing, transcript_wer, word_errors
from sweep.errors import DoctorError
from sweep.evaluate.reference import UtteranceTrace
from sweep.model import Contract, ModelInterface, StatePair

UTT = Utterance("u", Path("u.wav"), "да", 1.0)


def _logprobs(frames: int, seed: int = 0) -> np.ndarray:
    x = np.random.RandomState(seed).randn(frames, 35)
    return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)


def _trace(lp: np.ndarray, per_chunk: int, chunk_samples: int) -> UtteranceTrace:
    chunks = [lp[i:i + per_chunk] for i in range(0, len(lp), per_chunk)]
    feats = [np.full((64, per_chunk * 2), float(i)) for i in range(len(chunks))]
    return UtteranceTrace(UTT, chunk_samples, 8000, chunks, feats)


def test_identical_runs_have_zero_divergence():
    lp = _logprobs(60)
    c = compare([_trace(lp, 20, 3200)], [_trace(lp, 20, 3200)])
    assert c.kl == 0 and c.logprob_max_abs == 0 and c.argmax_agreement == 1
    assert c.feature_max_abs == 0 and len(c.chunks) == 3 and c.frames == 60


def test_runs_are_aligned_on_time_across_chunk_sizes():
    lp = _logprobs(60)
    served = _trace(lp, 15, 2400)  # 300 ms chunks: 4 chunks
    reference = _trace(lp, 20, 3200)  # 400 ms chunks: 3 chunks
    c = compare([served], [reference])
    assert c.logprob_max_abs == 0 and [d.start_s for d in c.chunks] == [0.0, 0.4, 0.8]


def test_divergence_shows_in_the_chunk_where_it_happens():
    lp = _logprobs(60)
    other = lp.copy()
    other[45] = _logprobs(1, seed=5)[0]
    c = compare([_trace(other, 20, 3200)], [_trace(lp, 20, 3200)])
    assert [d.kl > 0 for d in c.chunks] == [False, False, True]
    assert c.argmax_agreement < 1


def test_frame_rates_must_agree():
    with pytest.raises(DoctorError, match="frame rate"):
        compare([_trace(_logprobs(40), 20, 2400)], [_trace(_logprobs(40), 20, 3200)])


def test_word_errors_and_transcript_wer():
    assert word_errors("да нет да", "да да") == (1, 3)
    assert word_errors("", "что то") == (2, 0)
    assert transcript_wer(["да нет", ""], ["да", "ещё"]) == pytest.approx(2 / 2)
    assert differing(["Ёлка", "да"], ["елка", "нет"]) == 1


def test_causes_per_contract(tiny_onnx):
    mono = ModelInterface(name="m", onnx_path=tiny_onnx, contract=Contract.MONOLITHIC,
                          audio_input="signal", logprobs_output="logprobs",
                          states=(StatePair("state", "state_next"),))
    causes, skipped = known_causes(mono)
    assert [c.key for c in causes] == ["input_scaling"]
    assert set(skipped) == {"chunk_duration", "left_context", "fp16_features"}
    ens = ModelInterface(name="s", onnx_path=tiny_onnx, contract=Contract.SKIP_PREPROCESSOR,
                         audio_input="audio_signal", logprobs_output="logprobs",
                         length_input="length", states=())
    causes, skipped = known_causes(ens, alt_exports={300: Path("x300.onnx")})
    assert [c.key for c in causes] == ["chunk_duration", "left_context", "input_scaling",
                                       "input_scaling", "fp16_features"]
    assert skipped == {}
    stacked = causes[1].combine(causes[4])
    assert stacked.keys == {"left_context", "fp16_features"}
    assert stacked.left_context_samples == 0 and stacked.fp16_features is True
