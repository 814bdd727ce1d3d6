"""Calibration data for a streaming model: the (audio chunk, state) pairs the fp32 model
meets when calibration audio is streamed through it, chunk by chunk.

Random tensors would show AutoCast's range checks and the quantiser states no stream ever
reaches (the demo's attention cache counter, a zero state half-filled...), so the inputs of
every chunk of every calibration utterance are recorded as the fp32 pipeline runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep.data.manifest import Utterance
from sweep.errors import ConfigError
from sweep.infra.files import file_digest
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


def _cache_key(model: ModelInterface, utterances: list[Utterance]) -> str:
    ask = [file_digest(model.onnx_path), model.chunk_ms, model.pad_ms,
           model.left_context_samples, model.scale,
           [(u.id, file_digest(u.audio_path)) for u in utterances]]
    return hashlib.sha256(json.dumps(ask).encode()).hexdigest()[:24]


def collect(model: ModelInterface, utterances: list[Utterance], wanted: int,
            where: str = "dataset.calibration", cache_dir: Path | None = None
            ) -> CalibrationData:
    """Stream ``wanted`` utterances through the fp32 ONNX in-process and record every
    chunk's model inputs (state included). With ``cache_dir`` the pairs are kept there by
    content (the model, the audio), so the jobs of a sweep stream them once."""
    from sweep.evaluate.reference import OrtPipeline

    if wanted < 1:
        raise ConfigError(f"{where}_utterances={wanted}; expected at least 1.")
    if len(utterances) < wanted:
        raise ConfigError(
            f"{where}: {wanted} calibration utterances asked for, the calibration set has "
            f"{len(utterances)}. Lower {where}_utterances or point {where} at a larger set.")
    chosen = utterances[:wanted]
    cached = cache_dir / "calibration" / f"{_cache_key(model, chosen)}.npz" \
        if cache_dir is not None else None
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
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return CalibrationData(arrays, wanted, h.hexdigest()[:16])
