"""The numpy log-mel front end: shapes, maths, streaming split, fp16 round trip, and its
agreement with the demo model's torch front end."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.data import features
from sweep.data.features import HOP, LOG_GUARD, N_MELS, SAMPLE_RATE, WIN, log_mel


def _speechy(n: int, seed: int = 0) -> np.ndarray:
    """Harmonics plus noise at a telephone level: every mel band gets real energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * 0.05
    return (x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_constants() -> None:
    assert (SAMPLE_RATE, WIN, HOP, N_MELS) == (8000, 160, 80, 64)


@pytest.mark.parametrize("n", [160, 239, 240, 3200, 3280, 8000])
def test_frame_count(n: int) -> None:
    out = log_mel(np.zeros(n, np.float32))
    assert out.shape == (N_MELS, 1 + (n - WIN) // HOP)
    assert out.dtype == np.float32


def test_batch_shape_and_independence() -> None:
    batch = np.stack([_speechy(4000, s) for s in range(3)]).reshape(3, 1, 4000)
    out = log_mel(batch)
    assert out.shape == (3, 1, N_MELS, 49)
    np.testing.assert_allclose(out[1, 0], log_mel(batch[1, 0]), rtol=0, atol=1e-6)


def test_too_short_is_rejected() -> None:
    with pytest.raises(ValueError, match="160 samples"):
        log_mel(np.zeros(159, np.float32))


def test_silence_is_the_log_guard() -> None:
    np.testing.assert_allclose(log_mel(np.zeros(400, np.float32)), np.log(LOG_GUARD), rtol=1e-6)


def test_folded_basis_equals_explicit_pipeline() -> None:
    """Pre-emphasis over the whole signal, symmetric Hann, 160-point rfft, power, Slaney
    mel, log: the folded basis must reproduce it (the zero first window tap makes in-frame
    and whole-signal pre-emphasis identical)."""
    x = _speechy(2000).astype(np.float64)
    y = np.concatenate([[x[0]], x[1:] - 0.97 * x[:-1]])
    t = 1 + (len(x) - WIN) // HOP
    frames = np.stack([y[k * HOP : k * HOP + WIN] for k in range(t)]) * np.hanning(WIN)
    power = np.abs(np.fft.rfft(frames, n=160, axis=-1)) ** 2
    expected = np.log(power @ features.mel_filterbank() + LOG_GUARD).T
    np.testing.assert_allclose(log_mel(x.astype(np.float32)), expected, rtol=0, atol=1e-4)


def test_mel_filterbank_is_slaney() -> None:
    fb = features.mel_filterbank()
    assert fb.shape == (81, 64)
    assert (fb.sum(axis=0) > 0).all(), "no empty band at n_fft=160, 64 mels"
    # Slaney normalisation: each triangle has area 1 over its width in Hz (2 / width).
    hz = np.linspace(0, 4000, 81)
    peaks = hz[fb.argmax(axis=0)]
    assert np.all(np.diff(peaks) >= 0), "band centres increase"
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=8000, n_fft=160, n_mels=64, htk=False, norm="slaney")
    np.testing.assert_allclose(fb.T, ref, rtol=1e-5, atol=1e-8)


def test_streaming_with_80_samples_of_left_context_matches_whole_signal() -> None:
    """What the seed's client does for a stateless preprocessing step: each 400 ms chunk
    with the previous chunk's last 80 samples prepended (zeros first) gives exactly the
    frames of the whole signal with 80 zeros in front."""
    chunk = 3200
    x = _speechy(chunk * 5)
    whole = log_mel(np.concatenate([np.zeros(80, np.float32), x]))
    prev = np.zeros(80, np.float32)
    parts = []
    for i in range(5):
        c = x[i * chunk : (i + 1) * chunk]
        parts.append(log_mel(np.concatenate([prev, c])))
        prev = c[-80:]
    assert all(p.shape == (N_MELS, chunk // HOP) for p in parts)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=0, atol=1e-5)


def test_fp16_round_trip() -> None:
    x = _speechy(3280)
    exact = log_mel(x)
    rounded = log_mel(x, fp16_round_trip=True)
    assert rounded.dtype == np.float32
    np.testing.assert_array_equal(rounded, exact.astype(np.float16).astype(np.float32))
    # Half an fp16 ulp: 2**-11 relative, log-mel magnitudes stay below 32.
    assert np.max(np.abs(rounded - exact)) <= 32 * 2.0**-11
    assert not np.array_equal(rounded, exact)


def test_int16_scaling() -> None:
    out = features.int16_to_float(np.array([32767, -32767, 0], np.int16))
    np.testing.assert_array_equal(out, np.array([1.0, -1.0, 0.0], np.float32))


def test_torch_front_end_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    from demo.model import LogMel

    batch = np.stack([_speechy(3280, s) for s in range(4)])
    batch[3, :1000] = 0.0  # digital silence next to speech
    with torch.no_grad():
        got = LogMel()(torch.from_numpy(batch)).numpy()
    # The model computes in float32 (one strided conv, a matmul, a log); the reference in
    # float64. Measured worst case on speech-like audio is ~5e-5 in the log domain; 5e-4
    # leaves a 10x margin yet would catch any change of window, basis or filterbank.
    np.testing.assert_allclose(got, log_mel(batch), rtol=0, atol=5e-4)
