"""The seed's DALI preprocessing (features_8k_tone.py), written against NVIDIA DALI.

8 kHz, 20 ms window (160 samples), 10 ms hop, 160-point FFT, 64 mel bands (Slaney scale,
Slaney normalisation), pre-emphasis 0.97, ``log(mel + 2**-24)``, optional fp16 round
trip: the same features as :func:`sweep.data.features.log_mel`, computed by DALI's operators
in float32. Runs on the CPU (``device_id=None``) with the ``nvidia-dali-cuda120`` wheel;
on a GPU host the same graph serialises to ``model.dali`` for Triton's DALI backend.

Optional: ``pip install nvidia-dali-cuda120`` (about 425 MB). Check it against the numpy
reference with ``python -m sweep.doctor --target dali`` (docs/dali.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sweep.data.features import HOP, LOG_GUARD, N_FFT, N_MELS, PREEMPHASIS, SAMPLE_RATE, WIN
from sweep.errors import ConfigError

INSTALL_HINT = ("pip install nvidia-dali-cuda120 (the wheel runs CPU pipelines without a "
                "GPU; see docs/dali.md)")


def available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def _dali() -> Any:
    try:
        import nvidia.dali as dali
    except ImportError as exc:
        raise ConfigError(f"DALI features need NVIDIA DALI: {INSTALL_HINT}.") from exc
    return dali


def build_pipeline(batch_size: int, *, fp16_round_trip: bool = False,
                   device_id: int | None = None, num_threads: int = 1) -> Any:
    """The DALI pipeline: input ``AUDIO_CHUNK`` (float, 1-D per sample), output
    ``AUDIO_SIGNAL`` (64, frames). ``device_id=None`` builds a CPU-only pipeline."""
    dali = _dali()
    fn, types = dali.fn, dali.types
    import nvidia.dali.math as dmath

    @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                       prefetch_queue_depth=1)
    def pipeline() -> Any:
        audio = fn.external_source(name="AUDIO_CHUNK", dtype=types.FLOAT, ndim=1)
        # border="zero": y[0] = x[0]. The symmetric Hann window is 0 at a frame's first
        # sample, so the border never reaches the features (see sweep/data/features.py).
        x = fn.preemphasis_filter(audio, preemph_coeff=PREEMPHASIS, border="zero")
        spec = fn.spectrogram(x, nfft=N_FFT, window_length=WIN, window_step=HOP,
                              center_windows=False, power=2,
                              window_fn=np.hanning(WIN).tolist(), layout="ft")
        mel = fn.mel_filter_bank(spec, sample_rate=SAMPLE_RATE, nfilter=N_MELS, freq_low=0.0,
                                 freq_high=SAMPLE_RATE / 2, mel_formula="slaney",
                                 normalize=True)
        out = dmath.log(mel + LOG_GUARD)
        if fp16_round_trip:
            out = fn.cast(fn.cast(out, dtype=types.FLOAT16), dtype=types.FLOAT)
        return out

    pipe = pipeline()
    pipe.build()
    return pipe


class DaliLogMel:
    """Callable like :func:`sweep.data.features.log_mel`: float audio (B, N) -> (B, 64, T)."""

    def __init__(self, max_batch: int = 16, *, fp16_round_trip: bool = False,
                 device_id: int | None = None) -> None:
        self.max_batch = max_batch
        self.pipe = build_pipeline(max_batch, fp16_round_trip=fp16_round_trip,
                                   device_id=device_id)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.shape[-1] < WIN:
            raise ValueError(f"need at least {WIN} samples for one frame, got {x.shape[-1]}")
        out = []
        for start in range(0, x.shape[0], self.max_batch):
            part = x[start:start + self.max_batch]
            self.pipe.feed_input("AUDIO_CHUNK", [np.ascontiguousarray(a) for a in part])
            (mel,) = self.pipe.run()
            if hasattr(mel, "as_cpu"):
                mel = mel.as_cpu()
            out += [np.asarray(mel[i]) for i in range(len(part))]
        return np.stack(out).astype(np.float32)


def serialize(path: Path, max_batch: int = 16, *, fp16_round_trip: bool = True,
              device_id: int | None = None) -> Path:
    """Write ``model.dali`` for Triton's DALI backend.

    Every operator here is a CPU operator, so ``device_id=None`` serialises on any host; a
    GPU ``device_id`` needs libcuda at build time (DALI refuses to create a GPU pipeline
    without it)."""
    pipe = build_pipeline(max_batch, fp16_round_trip=fp16_round_trip, device_id=device_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe.serialize(filename=str(path))
    return path
