"""Datasets in the seed's layout: ``DATASET/tarred_audio_manifest.json`` plus audio files.

Each manifest line is a JSON object with ``audio_filepath`` and ``text`` (``duration`` is
optional and ignored: the audio header is the truth). Audio is found by the base name of
``audio_filepath`` under the dataset folder, as the seed's WER client resolves it, so
manifests written on another machine with absolute paths still work.

Every problem raises one :class:`~sweep.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sweep.errors import DatasetError

MANIFEST_NAME = "tarred_audio_manifest.json"
SAMPLE_RATE = 8000


@dataclass(frozen=True)
class Utterance:
    id: str
    audio_path: Path
    text: str
    duration: float


def _format_problem(path: Path, rate: int, channels: int, expected_rate: int) -> str | None:
    """What is wrong with an audio file's format, or None when it is usable."""
    if channels != 1:
        return (f"audio {path} has {channels} channels; it must be mono: mix it down, "
                f"e.g. `sox in.wav -c 1 out.wav`")
    if rate != expected_rate:
        return (f"audio {path} has a sample rate of {rate} Hz; it must be resampled to "
                f"{expected_rate // 1000} kHz ({expected_rate} Hz), "
                f"e.g. `sox in.wav -r {expected_rate} out.wav`")
    return None


def _audio_info(path: Path, where: str, expected_rate: int) -> float:
    """Check one audio file's header and return its duration in seconds."""
    if not path.is_file():
        raise DatasetError(f"{where}: audio file {path} does not exist")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"{where}: audio file {path} cannot be read: {exc}") from exc
    problem = _format_problem(path, info.samplerate, info.channels, expected_rate)
    if problem:
        raise DatasetError(f"{where}: {problem}")
    return info.frames / info.samplerate


def _parse_line(raw: bytes, where: str) -> dict[str, object]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{where}: not valid UTF-8 (byte {exc.start}); save the manifest as UTF-8"
        ) from exc
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, found {type(row).__name__}")
    return row


def _field(row: dict[str, object], key: str, where: str) -> str:
    if key not in row:
        raise DatasetError(f"{where}: missing field {key!r} (each line needs "
                           f"'audio_filepath' and 'text')")
    value = row[key]
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {key!r} must be a string, "
                           f"found {type(value).__name__}")
    return value


def load_manifest(dataset_dir: Path, expected_rate: int = SAMPLE_RATE,
                  manifest_name: str = MANIFEST_NAME) -> list[Utterance]:
    """Read and check a dataset: every line, and every audio file's header."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder {dataset_dir} does not exist")
    manifest = dataset_dir / manifest_name
    if not manifest.is_file():
        raise DatasetError(f"dataset folder {dataset_dir} has no {manifest_name}")
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(manifest.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{manifest} line {number}"
        row = _parse_line(raw, where)
        audio_name = _field(row, "audio_filepath", where)
        text = _field(row, "text", where).strip()
        if not text:
            raise DatasetError(f"{where}: empty 'text'; every utterance needs a transcript")
        # Resolve by base name, as the seed's client does (manifests may hold foreign paths).
        audio_path = dataset_dir / Path(audio_name.replace("\\", "/")).name
        uid = audio_path.stem
        if uid in first_line:
            raise DatasetError(f"{where}: audio {audio_path.name} is already used on line "
                               f"{first_line[uid]}; each utterance needs its own file")
        first_line[uid] = number
        duration = _audio_info(audio_path, where, expected_rate)
        utterances.append(Utterance(uid, audio_path, text, duration))
    if not utterances:
        raise DatasetError(f"{manifest} has no utterances")
    return utterances


def read_audio(path: Path, expected_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The samples of a mono ``expected_rate`` file as int16 (the range T-one is fed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"audio file {path} cannot be read: {exc}") from exc
    problem = _format_problem(path, rate, data.shape[1], expected_rate)
    if problem:
        raise DatasetError(problem)
    return np.ascontiguousarray(data[:, 0])
