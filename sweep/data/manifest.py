"""Datasets in the seed's layout: ``DATASET/tarred_audio_manifest.json`` plus audio files.

Each manifest line is a JSON object with ``audio_filepath`` and ``text`` (``duration`` is
optional and ignored: the audio header is the truth). ``audio_filepath`` is looked up
relative to the dataset folder first (NeMo-style ``audio/x.wav``), then by its base name
directly under the folder, as the seed's WER client resolves it, so manifests written on
another machine with absolute paths still work. A relative path that climbs out of the
folder (``../x.wav``) is refused.

Audio is read at its real scale whatever the WAV subtype: libsndfile hands every subtype
over as float in [-1, 1] (integer PCM divided by its full scale, float WAV as stored), and
that is scaled to the int16 range T-one is fed. Asking libsndfile for int16 directly does
not rescale float WAVs (0.5 becomes 0): a float test set was scored as silence. A float
sample that is NaN, infinite or beyond full scale is refused, as is a file of 0 samples.

A reference text that holds words T-one's alphabet cannot output (digits, Latin letters,
symbols: "в 2023 году") is refused, naming the line, the utterance and the words: scored,
normalising would drop them silently ("в году"). ``out_of_alphabet="drop"``
(``dataset.out_of_alphabet=drop``) accepts such lines and scores without those words; the
job counts the references altered (:func:`altered_references`) and reports it. Punctuation,
case, ё and hyphens are not words and are normalised silently. A reference that normalises
to nothing (punctuation only, or digits only when dropped) is refused either way: scored,
it would be dropped and the hypothesis of that line never counted.

Every problem raises one :class:`~sweep.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from sweep.data.text import LETTERS, foreign_characters, normalize, out_of_alphabet
from sweep.errors import ConfigError, DatasetError

MANIFEST_NAME = "tarred_audio_manifest.json"
SAMPLE_RATE = 8000
# libsndfile reads integer PCM as sample / 2**(bits-1): int16's full scale maps back exactly.
FULL_SCALE = 32768.0
# Subtypes whose samples are stored as floats: they can hold NaN, inf or values beyond
# full scale, which only reading the data shows.
FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
# dataset.out_of_alphabet: what a reference holding words T-one cannot output does.
OUT_OF_ALPHABET = ("refuse", "drop")
# How many of a line's words a refusal names.
_NAMED_WORDS = 5


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
    """Check one audio file's header (and a float file's samples); return its duration in
    seconds."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"{where}: audio file {path} cannot be read: {exc}") from exc
    problem = _format_problem(path, info.samplerate, info.channels, expected_rate)
    if problem:
        raise DatasetError(f"{where}: {problem}")
    if info.frames == 0:
        raise DatasetError(f"{where}: audio {path} has no samples (0 frames, subtype "
                           f"{info.subtype}); re-export it or remove the line")
    if info.subtype in FLOAT_SUBTYPES:  # NaN, inf or unscaled values show only in the data
        read_audio(path, expected_rate, where=where)
    return info.frames / info.samplerate


def _to_int16(samples: np.ndarray, path: Path, subtype: str, rate: int) -> np.ndarray:
    """libsndfile's float samples (full scale +-1) as int16, refusing what has no int16
    value: a NaN or infinite sample, or a float file holding unscaled numbers."""
    finite = np.isfinite(samples)
    if not finite.all():
        first = int(np.argmin(finite))
        raise DatasetError(
            f"audio {path} ({subtype}) has {int(samples.size - finite.sum())} non-finite "
            f"sample(s) (NaN or inf), the first at sample {first} ({first / rate:.3f} s); "
            "fix or re-export the file")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    # One int16 step of slack: 32767/32768 and -1.0 are both full scale. Only stored floats
    # are held to it; a lossy codec's decoder may overshoot a little, and is clipped.
    if subtype in FLOAT_SUBTYPES and peak > 1.0 + 1.0 / FULL_SCALE:
        raise DatasetError(
            f"audio {path} is a {subtype} file whose samples reach {peak:g}, beyond the "
            "float full scale of 1.0: it holds unscaled values (int16 numbers written as "
            "float, say). Divide the samples by 32768, or save the file as 16-bit PCM "
            "(soundfile: subtype='PCM_16')")
    scaled = np.rint(samples * FULL_SCALE)
    return np.clip(scaled, -FULL_SCALE, FULL_SCALE - 1).astype(np.int16)


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


def resolve_audio(dataset_dir: Path, value: str, where: str) -> Path:
    """The audio file a manifest's ``audio_filepath`` names: relative to the dataset folder
    first (NeMo's ``audio/x.wav``), then the base name directly under the folder (the
    seed's layout, and manifests written elsewhere with absolute paths)."""
    raw = value.replace("\\", "/")
    candidates: list[Path] = []
    if not PurePosixPath(raw).is_absolute():
        relative = posixpath.normpath(raw)
        if relative == ".." or relative.startswith("../"):
            raise DatasetError(
                f"{where}: audio_filepath {value!r} leaves the dataset folder {dataset_dir}; "
                "audio must lie inside it (a path relative to the folder, or a base name)")
        candidates.append(dataset_dir / relative)
    else:
        inside = Path(posixpath.normpath(raw))
        if inside.is_relative_to(dataset_dir):
            candidates.append(inside)
    by_name = dataset_dir / PurePosixPath(raw).name
    if by_name not in candidates:
        candidates.append(by_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " nor ".join(str(c) for c in candidates)
    raise DatasetError(f"{where}: audio file {tried} does not exist")


def _check_text(text: str, where: str, utterance: str, policy: str) -> None:
    if not text:
        raise DatasetError(f"{where}: empty 'text'; every utterance needs a transcript")
    words = out_of_alphabet(text) if policy == "refuse" else []
    if words:
        named = ", ".join(repr(w) for w in words[:_NAMED_WORDS]) + (
            f" and {len(words) - _NAMED_WORDS} more" if len(words) > _NAMED_WORDS else "")
        # A word that mixes in one foreign character (a Latin 'o') looks right: say which.
        mixed = [w for w in words[:_NAMED_WORDS] if any(c.lower() in LETTERS for c in w)]
        detail = "".join(f" ({w!r} holds {foreign_characters(w)})" for w in mixed)
        raise DatasetError(
            f"{where} ({utterance}): text {text!r} holds {named}{detail}, which T-one's "
            "alphabet cannot output (normalised for scoring, the text would lose it "
            "silently); write numbers and Latin words as Russian words, or set "
            "dataset.out_of_alphabet=drop to score without them (counted and reported)")
    if not normalize(text):
        raise DatasetError(
            f"{where}: 'text' {text!r} is empty once normalised for scoring (lowercase, "
            f"only the letters {LETTERS} and spaces kept): its words could never be counted. "
            "Spell numbers and foreign words in Russian letters, or remove the line")


def altered_references(utterances: list[Utterance]) -> int:
    """How many references lose words when normalised for scoring (``out_of_alphabet=drop``
    let them through)."""
    return sum(bool(out_of_alphabet(u.text)) for u in utterances)


def load_manifest(dataset_dir: Path, expected_rate: int = SAMPLE_RATE,
                  manifest_name: str = MANIFEST_NAME, out_of_alphabet: str = "refuse"
                  ) -> list[Utterance]:
    """Read and check a dataset: every line, every audio file's header, every float audio
    file's samples.

    ``manifest_name`` may also be a path (absolute, or relative to the dataset folder).
    ``out_of_alphabet``: "refuse" a reference holding words T-one cannot output, or "drop"
    those words when scoring (count them with :func:`altered_references`).
    """
    if out_of_alphabet not in OUT_OF_ALPHABET:
        raise ConfigError(f"dataset.out_of_alphabet={out_of_alphabet!r}: expected one of "
                          f"{', '.join(OUT_OF_ALPHABET)}")
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
        _check_text(text, where, PurePosixPath(audio_name.replace("\\", "/")).stem,
                    out_of_alphabet)
        audio_path = resolve_audio(dataset_dir, audio_name, where)
        # The path under the folder without its suffix: the base name in the seed's flat
        # layout, ``audio/x`` in a NeMo-style one (two folders may both hold a 0001.wav).
        uid = audio_path.relative_to(dataset_dir).with_suffix("").as_posix()
        if uid in first_line:
            raise DatasetError(f"{where}: audio {audio_path.relative_to(dataset_dir)} is "
                               f"already used on line {first_line[uid]}; each utterance "
                               "needs its own file")
        first_line[uid] = number
        duration = _audio_info(audio_path, where, expected_rate)
        utterances.append(Utterance(uid, audio_path, text, duration))
    if not utterances:
        raise DatasetError(f"{manifest} has no utterances")
    return utterances


def read_audio(path: Path, expected_rate: int = SAMPLE_RATE, *, where: str | None = None
               ) -> np.ndarray:
    """The samples of a mono ``expected_rate`` file as int16 (the range T-one is fed), at
    their real scale whatever the subtype. ``where`` (a manifest line) prefixes errors."""
    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DatasetError(f"{prefix}audio file {path} does not exist")
    try:
        info = sf.info(str(path))
        # float64: integer PCM and codecs scaled by libsndfile, float subtypes as stored.
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"{prefix}audio file {path} cannot be read: {exc}") from exc
    problem = _format_problem(path, rate, data.shape[1], expected_rate)
    if problem:
        raise DatasetError(prefix + problem)
    if data.shape[0] == 0:
        raise DatasetError(f"{prefix}audio {path} has no samples (0 frames, subtype "
                           f"{info.subtype}); re-export it or remove the line")
    try:
        return _to_int16(data[:, 0], path, info.subtype, rate)
    except DatasetError as exc:
        raise DatasetError(prefix + str(exc)) from None
