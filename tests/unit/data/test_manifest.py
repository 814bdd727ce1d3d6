"""Dataset loading: good datasets load, every kind of bad input gets one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.data.manifest import MANIFEST_NAME, Utterance, load_manifest, read_audio
from sweep.errors import DatasetError

RATE = 8000


def _wav(path: Path, seconds: float = 0.5, rate: int = RATE, channels: int = 1) -> Path:
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal((int(seconds * rate), channels)) * 1000).astype(np.int16)
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return path


def _dataset(tmp_path: Path, lines: list[str | bytes]) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir(exist_ok=True)
    raw = b"".join((ln if isinstance(ln, bytes) else ln.encode("utf-8")) + b"\n" for ln in lines)
    (folder / MANIFEST_NAME).write_bytes(raw)
    return folder


def _row(audio: str = "a.wav", text: str = "привет мир", **extra: object) -> str:
    return json.dumps({"audio_filepath": audio, "text": text, **extra}, ensure_ascii=False)


def _load_error(folder: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_manifest(folder)
    return str(info.value)


def test_loads_good_dataset_resolving_audio_by_basename(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row("/elsewhere/x/a.wav", duration=99.0), "", _row("b.wav")])
    _wav(folder / "a.wav", 0.5)
    _wav(folder / "b.wav", 1.25)
    utts = load_manifest(folder)
    assert utts == [
        Utterance("a", folder / "a.wav", "привет мир", 0.5),
        Utterance("b", folder / "b.wav", "привет мир", 1.25),
    ]


def test_missing_folder(tmp_path: Path) -> None:
    message = _load_error(tmp_path / "nope")
    assert "dataset folder" in message and "nope" in message and "does not exist" in message


def test_missing_manifest(tmp_path: Path) -> None:
    message = _load_error(tmp_path)
    assert str(tmp_path) in message and MANIFEST_NAME in message


def test_malformed_json_names_line(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row(), '{"audio_filepath": "b.wav", "text": '])
    _wav(folder / "a.wav")
    message = _load_error(folder)
    assert MANIFEST_NAME in message and "line 2" in message and "malformed JSON" in message


def test_line_that_is_not_an_object(tmp_path: Path) -> None:
    message = _load_error(_dataset(tmp_path, ['["a.wav", "text"]']))
    assert "line 1" in message and "JSON object" in message


@pytest.mark.parametrize("missing", ["text", "audio_filepath"])
def test_missing_field(tmp_path: Path, missing: str) -> None:
    row = {"audio_filepath": "a.wav", "text": "да"}
    del row[missing]
    folder = _dataset(tmp_path, [_row(), json.dumps(row)])
    _wav(folder / "a.wav")
    message = _load_error(folder)
    assert "line 2" in message and f"missing field '{missing}'" in message


def test_empty_text(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row(text="   ")])
    _wav(folder / "a.wav")
    message = _load_error(folder)
    assert "line 1" in message and "empty 'text'" in message


def test_non_string_text(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [json.dumps({"audio_filepath": "a.wav", "text": 5})])
    message = _load_error(folder)
    assert "line 1" in message and "'text' must be a string" in message


def test_missing_audio_file(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row("gone.wav")])
    message = _load_error(folder)
    assert "line 1" in message and "gone.wav" in message and "does not exist" in message


def test_stereo_audio(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row()])
    _wav(folder / "a.wav", channels=2)
    message = _load_error(folder)
    assert "line 1" in message and "a.wav" in message and "2 channels" in message
    assert "mono" in message


def test_wrong_rate_says_found_rate_and_how_to_fix(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row()])
    _wav(folder / "a.wav", rate=16000)
    message = _load_error(folder)
    assert "line 1" in message and "a.wav" in message and "16000 Hz" in message
    assert "resampled to 8 kHz" in message and "sox" in message


def test_unreadable_audio(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row()])
    (folder / "a.wav").write_bytes(b"not a wav file at all")
    message = _load_error(folder)
    assert "line 1" in message and "cannot be read" in message


def test_non_utf8_text(tmp_path: Path) -> None:
    bad = b'{"audio_filepath": "a.wav", "text": "' + "привет".encode("cp1251") + b'"}'
    folder = _dataset(tmp_path, [_row("b.wav"), bad])
    _wav(folder / "b.wav")
    message = _load_error(folder)
    assert "line 2" in message and "UTF-8" in message


def test_duplicate_audio(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, [_row(), _row()])
    _wav(folder / "a.wav")
    message = _load_error(folder)
    assert "line 2" in message and "line 1" in message and "a.wav" in message


def test_empty_manifest(tmp_path: Path) -> None:
    message = _load_error(_dataset(tmp_path, [""]))
    assert "no utterances" in message


def test_read_audio_returns_int16_samples(tmp_path: Path) -> None:
    path = _wav(tmp_path / "a.wav", 0.25)
    samples = read_audio(path)
    assert samples.dtype == np.int16 and samples.shape == (2000,)
    expected, _ = sf.read(str(path), dtype="int16")
    np.testing.assert_array_equal(samples, expected)


def test_read_audio_rejects_wrong_rate_and_channels(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"22050 Hz.*resampled to 8 kHz"):
        read_audio(_wav(tmp_path / "r.wav", rate=22050))
    with pytest.raises(DatasetError, match=r"2 channels.*mono"):
        read_audio(_wav(tmp_path / "s.wav", channels=2))
    with pytest.raises(DatasetError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
