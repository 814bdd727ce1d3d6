"""WER/CER bootstrap intervals and the latency spread over repeats
(sweep/evaluate/metrics.py)."""

from __future__ import annotations

import math

import jiwer
import numpy as np

from sweep.evaluate.metrics import bootstrap_ci, repeat_spread, score


def test_the_interval_holds_the_corpus_wer_and_is_reproducible():
    refs = ["мама мыла раму", "кот спит", "один два три четыре"] * 40
    hyps = ["мама мыла", "кот спит", "один два три пять"] * 40
    s = score(refs, hyps)
    assert math.isclose(s.wer, jiwer.wer(refs, hyps))
    low, high = s.wer_ci
    assert low <= s.wer <= high and high - low < 0.1
    assert score(refs, hyps).wer_ci == s.wer_ci  # fixed seed
    assert s.cer_ci[0] <= s.cer <= s.cer_ci[1]
    assert set(s.metrics()) >= {"wer_ci_low", "wer_ci_high", "cer_ci_low", "cer_ci_high"}


def test_one_word_on_few_utterances_is_a_wide_interval():
    errors, lengths = np.array([1.0, 0, 0, 0, 0]), np.array([10.0] * 5)
    low, high = bootstrap_ci(errors, lengths)
    assert low == 0.0 and high >= 0.04
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([1.0]), np.array([3.0])))


def test_repeat_spread():
    out = repeat_spread([[10.0] * 99 + [50.0], [10.0] * 99 + [60.0]])
    assert out["latency_p99_ms_min"] < out["latency_p99_ms_max"]
    assert math.isclose(out["latency_p99_ms_spread"],
                        out["latency_p99_ms_max"] - out["latency_p99_ms_min"])
    assert repeat_spread([[1.0, 2.0]]) == {}
