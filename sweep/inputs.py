"""A job's model and data, resolved once at its start: the ONNX checked and hashed, the test
set read and hashed, the calibration set (when the flag set needs one) read and hashed.
Every phase after it takes these digests (``sweep/keys.py``) instead of hashing the files
again: a job reads its ONNX's bytes for a digest once, however many caches it consults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweep import keys
from sweep.data.manifest import Utterance
from sweep.model import ModelInterface

if TYPE_CHECKING:
    from sweep.config import JobSettings
    from sweep.flags import FlagSet


@dataclass(frozen=True)
class ResolvedCalibration:
    """The calibration set of a flag set realised in the graph (or one that tunes build
    routes): every utterance of the set (``collect`` checks there are ``wanted``), the
    content of the ``wanted`` first, the key of their streamed pairs."""

    utterances: tuple[Utterance, ...]
    wanted: int
    digest: str  # keys.calibration_digest: part of a calibrated job's identity
    pairs_key: str  # keys.calibration_pairs_key: the streamed pairs' cache entry


@dataclass(frozen=True)
class ResolvedInputs:
    """What a job runs on, by content."""

    model: ModelInterface
    onnx_digest: str  # sha256 of the ONNX's bytes
    manifest: Path
    utterances: tuple[Utterance, ...]  # the scored ones (dataset.limit applied)
    data_digest: str  # keys.utterances_digest: ids, transcripts, durations (identity)
    dataset_digest: str  # keys.dataset_digest: manifest and audio bytes (MLflow dataset)
    calibration: ResolvedCalibration | None = None


def resolve_inputs(settings: JobSettings, flags: FlagSet) -> ResolvedInputs:
    """The model checked (one zero chunk through ONNX Runtime: it must run as it declares
    before anything is built) and hashed, the test set read (every line, every audio file)
    and hashed, the calibration set read and hashed when ``flags`` needs one. Raises the
    ModelError / DatasetError / ConfigError that names what is wrong."""
    model = settings.model_interface()
    model.check()
    onnx_digest = keys.file_digest(model.onnx_path)
    spec = settings.dataset
    utterances = tuple(spec.load())
    manifest = spec.folder / spec.manifest
    calibration = None
    if flags.in_graph or flags.tunes_routes:
        every = tuple(spec.load_calibration())
        audio = keys.audio_digests(every[:spec.calibration_utterances])
        calibration = ResolvedCalibration(
            every, spec.calibration_utterances, keys.calibration_digest(audio),
            keys.calibration_pairs_key(onnx_digest, model, audio))
    return ResolvedInputs(
        model=model, onnx_digest=onnx_digest, manifest=manifest, utterances=utterances,
        data_digest=keys.utterances_digest(utterances),
        dataset_digest=keys.dataset_digest(manifest, keys.audio_digests(utterances)),
        calibration=calibration)
