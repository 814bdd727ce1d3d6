"""Calibration data for a streaming model: the (audio chunk, state) pairs the fp32 model
meets when calibration audio is streamed through it, chunk by chunk.

Random tensors would show AutoCast's range checks and the quantiser states no stream ever
reaches (the demo's attention cache counter, a zero state half-filled...), so the inputs of
every chunk of every calibration utterance are recorded as the fp32 pipeline runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep import keys
from sweep.data.manifest import Utterance
from sweep.errors import ConfigError
from sweep.model import ModelInterface


@dataclass(frozen=True)
class CalibrationData:
    """ONNX input name -> (N, ...) arrays, one row per streamed chunk."""

    arrays: dict[str, np.ndarray]
    utterances: int
    digest: str  # of the arrays: part of the typed ONNX's identity

    @property
    def samples(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0]) if self.arrays else 0

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **self.arrays)
        return path


def collect(model: ModelInterface, utterances: Sequence[Utterance], wanted: int,
            where: str = "dataset.calibration", cache_dir: Path | None = None,
            key: str | None = None) -> CalibrationData:
    """Stream ``wanted`` utterances through the fp32 ONNX in-process and record every
    chunk's model inputs (state included). With ``cache_dir`` the pairs are kept there by
    content (``keys.calibration_pairs_key``: the model, the audio), so the jobs of a sweep
    stream them once; ``key``: that key, when the caller resolved it already (a job's
    ``ResolvedCalibration.pairs_key``), else the files are hashed here."""
    from sweep.evaluate.reference import OrtPipeline

    if wanted < 1:
        raise ConfigError(f"{where}_utterances={wanted}; expected at least 1.")
    if len(utterances) < wanted:
        raise ConfigError(
            f"{where}: {wanted} calibration utterances asked for, the calibration set has "
            f"{len(utterances)}. Lower {where}_utterances or point {where} at a larger set.")
    chosen = list(utterances[:wanted])
    if cache_dir is not None and key is None:
        key = keys.calibration_pairs_key(keys.file_digest(model.onnx_path), model,
                                         keys.audio_digests(chosen))
    cached = cache_dir / "calibration" / f"{key}.npz" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as data:
            arrays = {k: data[k] for k in data.files}
    else:
        feeds: list[dict[str, np.ndarray]] = []
        OrtPipeline(model, on_feed=lambda feed: feeds.append(
            {k: np.array(v, copy=True) for k, v in feed.items()})).run(chosen)
        arrays = {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(cached)  # whole or absent: a concurrent job sees one or the other
    return CalibrationData(arrays, wanted, keys.arrays_digest(arrays))
