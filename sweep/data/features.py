"""T-one's log-mel front end in numpy: the single reference for every feature computation.

The Triton preprocessing step and the reference pipeline call :func:`log_mel`; the demo
model's in-graph front end (``demo/model.py``) builds its convolution weights from
:func:`stft_basis` and :func:`mel_filterbank` here, so both compute the same thing.

Conventions (T-one's, see ../shared/TONE-FACTS.md):

* 8 kHz audio as float32 in [-1, 1] (int16 samples divided by 32767);
* frame k covers samples ``[80 k, 80 k + 160)``, no centre padding, so ``N`` samples give
  ``T = 1 + (N - 160) // 80`` frames; a streaming client that prepends the previous
  chunk's last 80 samples to a chunk of ``n`` samples gets exactly ``n / 80`` frames;
* pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` folded into the windowed DFT basis. The
  first sample of a frame has no predecessor inside the frame, but the symmetric Hann
  window is zero there, so in-frame and whole-signal pre-emphasis give identical frames;
* power spectrum of a 160-point real DFT (81 bins), Slaney mel filterbank with Slaney
  (area) normalisation, 64 bands from 0 Hz to 4 kHz, ``log(mel + 2**-24)``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 8000
WIN = 160  # 20 ms
HOP = 80  # 10 ms
N_FFT = 160
N_MELS = 64
N_BINS = N_FFT // 2 + 1  # 81
PREEMPHASIS = 0.97
LOG_GUARD = 2.0**-24
INT16_SCALE = 32767.0  # T-one divides int16 samples by INT16_MAX, not 32768


def num_frames(num_samples: int) -> int:
    """Frames produced from ``num_samples`` samples (no centre padding)."""
    if num_samples < WIN:
        return 0
    return 1 + (num_samples - WIN) // HOP


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's auditory-toolbox scale: linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    hz = f_sp * mel
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


@cache
def mel_filterbank() -> np.ndarray:
    """(81, 64) float64 weights: power spectrum bins -> Slaney-normalised mel bands.

    Same construction as ``librosa.filters.mel(sr=8000, n_fft=160, n_mels=64,
    htk=False, norm="slaney")``, transposed so that ``power @ fb`` gives the bands.
    """
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_BINS)
    mel_points = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0],
                    N_MELS + 2)
    )
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    weights = np.zeros((N_MELS, N_BINS))
    for i in range(N_MELS):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    # Slaney normalisation: every triangle has unit area in Hz, so band energies do not
    # grow with the band's width.
    weights *= (2.0 / (mel_points[2 : N_MELS + 2] - mel_points[:N_MELS]))[:, None]
    fb = weights.T.copy()
    fb.setflags(write=False)
    return fb


@cache
def stft_basis() -> np.ndarray:
    """(160, 162) float64: frame samples -> [Re(X_0..X_80), Im(X_0..X_80)].

    The symmetric Hann window and the 0.97 pre-emphasis are both folded in, so one
    matrix product (or one strided convolution in the model) yields the spectrum.
    """
    n = np.arange(N_FFT)
    k = np.arange(N_BINS)
    window = np.hanning(WIN)  # symmetric; zero at both ends
    angle = 2.0 * np.pi * np.outer(n, k) / N_FFT
    windowed = np.concatenate(
        [window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)], axis=1
    )  # (160, 162): row n multiplies the pre-emphasised sample y[n]
    # y[n] = x[n] - a x[n-1]  =>  sum_n W[n] y[n] = sum_m x[m] (W[m] - a W[m+1]).
    basis = windowed.copy()
    basis[:-1] -= PREEMPHASIS * windowed[1:]
    basis.setflags(write=False)
    return basis


def log_mel(audio: np.ndarray, *, fp16_round_trip: bool = False) -> np.ndarray:
    """Log-mel features of float audio ``(..., N)`` -> float32 ``(..., 64, T)``.

    ``T = 1 + (N - 160) // 80``; trailing samples that do not fill a hop are ignored.
    Computed in float64 and rounded once, so this is the reference the float32 model
    front end is measured against. ``fp16_round_trip`` casts the result to float16 and
    back, as the seed's DALI preprocessing does before handing features to the model.
    """
    x = np.asarray(audio)
    if x.ndim < 1:
        raise ValueError("audio must have at least one (time) dimension")
    n = x.shape[-1]
    t = num_frames(n)
    if t < 1:
        raise ValueError(f"need at least {WIN} samples for one frame, got {n}")
    x = x.astype(np.float64, copy=False)
    frames = np.lib.stride_tricks.sliding_window_view(x, WIN, axis=-1)[..., ::HOP, :][..., :t, :]
    spec = frames @ stft_basis()  # (..., T, 162)
    power = spec[..., :N_BINS] ** 2 + spec[..., N_BINS:] ** 2
    mel = power @ mel_filterbank()  # (..., T, 64)
    feats = np.log(mel + LOG_GUARD).astype(np.float32)
    feats = np.swapaxes(feats, -1, -2)
    if fp16_round_trip:
        feats = feats.astype(np.float16).astype(np.float32)
    return np.ascontiguousarray(feats)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 (or int16-range int32) samples -> float32 in [-1, 1], T-one's scaling."""
    return (np.asarray(samples).astype(np.float32) / np.float32(INT16_SCALE)).astype(np.float32)


__all__ = [
    "HOP",
    "INT16_SCALE",
    "LOG_GUARD",
    "N_BINS",
    "N_FFT",
    "N_MELS",
    "PREEMPHASIS",
    "SAMPLE_RATE",
    "WIN",
    "int16_to_float",
    "log_mel",
    "mel_filterbank",
    "num_frames",
    "stft_basis",
]
