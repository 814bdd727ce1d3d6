"""The DALI front end computes sweep.data.features.log_mel (needs nvidia-dali; CPU is enough)."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.data.features import log_mel

pytest.importorskip("nvidia.dali", reason="nvidia-dali is not installed (optional, docs/dali.md)")

from sweep.data.dali import DaliLogMel

# float32 DALI against the float64-then-rounded numpy reference: measured 9.5e-5 on noise
# and speech chunks.
TOL = 5e-4


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    rng = np.random.RandomState(0)
    t = np.arange(3280) / 8000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([tone, rng.randn(3280) * 0.1, np.zeros(3280)]).astype(np.float32)


def test_dali_matches_numpy_features(audio):
    out = DaliLogMel(max_batch=2)(audio)  # 3 rows through a batch of 2: two DALI runs
    ref = log_mel(audio)
    assert out.shape == ref.shape == (3, 64, 40)
    assert np.abs(out - ref).max() < TOL


def test_dali_fp16_round_trip(audio):
    out = DaliLogMel(max_batch=4, fp16_round_trip=True)(audio)
    assert np.array_equal(out, out.astype(np.float16).astype(np.float32))
    # Values within TOL of a rounding boundary may land one fp16 step apart: 2**-5 at
    # |x| < 32 (log-mel spans about -17..15 here).
    assert np.abs(out - log_mel(audio, fp16_round_trip=True)).max() <= 2 ** -5
