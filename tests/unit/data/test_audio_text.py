"""Audio read at its real scale and references that cannot vanish: every case here was
once scored silently wrong (a float WAV as silence, a punctuation-only reference dropped)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.data.manifest import MANIFEST_NAME, load_manifest, read_audio
from sweep.errors import DatasetError, EvaluationError
from sweep.evaluate.metrics import score
from tests.support.paths import DEMO, DEMO_ONNX

TINY = DEMO / "data" / "demo_tiny"
RATE = 8000


def _sine(seconds: float = 0.25, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * 300 * t)


def _dataset(folder: Path, rows: list[dict[str, object]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


def _error(folder: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_manifest(folder)
    return str(info.value)


def float_copy(src: Path, dst: Path, subtype: str = "FLOAT") -> Path:
    """A copy of a dataset with every WAV rewritten in ``subtype`` (same samples)."""
    dst.mkdir(parents=True)
    shutil.copy(src / MANIFEST_NAME, dst / MANIFEST_NAME)
    for wav in src.glob("*.wav"):
        data, rate = sf.read(str(wav), dtype="float32")
        sf.write(str(dst / wav.name), data, rate, subtype=subtype)
    return dst


# -- audio at its real scale -------------------------------------------------------------

@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_reads_the_same_samples_as_its_int16_original(tmp_path: Path,
                                                                subtype: str) -> None:
    wav = TINY / "test_s7_000000.wav"
    copy = float_copy(TINY, tmp_path / "float", subtype) / wav.name
    assert sf.info(str(copy)).subtype == subtype
    original = read_audio(wav)
    assert np.abs(original).max() > 1000  # real speech, not silence
    np.testing.assert_array_equal(read_audio(copy), original)


@pytest.mark.parametrize("subtype", sorted(set(sf.available_subtypes("WAV"))
                                           - {"MPEG_LAYER_III"}))
def test_every_wav_subtype_is_read_at_full_scale(tmp_path: Path, subtype: str) -> None:
    """A 0.5 full-scale sine reads back near 16384 whatever the encoding (lossy telephony
    codecs within their own error)."""
    path = tmp_path / f"{subtype}.wav"
    sf.write(str(path), _sine(), RATE, subtype=subtype)
    samples = read_audio(path)
    assert samples.dtype == np.int16
    peak = np.abs(samples.astype(np.int64)).max()
    assert 0.9 * 16384 < peak < 2.05 * 16384, (subtype, peak)
    if subtype.startswith("PCM") or subtype in ("FLOAT", "DOUBLE"):
        assert abs(int(peak) - 16384) <= 1


def test_float_copy_of_demo_tiny_scores_the_same_wer(tmp_path: Path) -> None:
    """The in-process fp32 reference (the frame-agreement baseline) over a FLOAT copy of
    demo_tiny transcribes exactly what it transcribes from the int16 original."""
    from sweep.config import ModelConfig, StateConfig, model_interface
    from sweep.evaluate.decode import GreedyDecoder
    from sweep.evaluate.reference import OrtPipeline

    model = model_interface(ModelConfig(
        name="demo_monolithic", onnx_path=str(DEMO_ONNX),
        states=[StateConfig(input="state", output="state_next")]))
    pipeline = OrtPipeline(model)
    decoder = GreedyDecoder()

    def wer(folder: Path) -> tuple[float, list[str]]:
        utterances = load_manifest(folder)[:4]
        run = pipeline.run(utterances)
        hyps = [decoder.decode(r.logprobs) for r in run.results]
        return score([u.text for u in utterances], hyps).wer, hyps

    int16_wer, int16_hyps = wer(TINY)
    float_wer, float_hyps = wer(float_copy(TINY, tmp_path / "float"))
    assert int16_wer < 0.5  # the demo model hears the original
    assert float_hyps == int16_hyps
    assert float_wer == int16_wer


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_sample_is_refused_with_its_line(tmp_path: Path, bad: float) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "a.wav", "text": "да"},
                                        {"audio_filepath": "b.wav", "text": "нет"}])
    sf.write(str(folder / "a.wav"), _sine(), RATE, subtype="FLOAT")
    samples = _sine()
    samples[100] = bad
    sf.write(str(folder / "b.wav"), samples, RATE, subtype="FLOAT")
    message = _error(folder)
    assert f"{MANIFEST_NAME} line 2: " in message and "b.wav" in message
    assert "non-finite" in message and "sample 100" in message
    with pytest.raises(DatasetError, match="non-finite"):
        read_audio(folder / "b.wav")


def test_unscaled_float_wav_is_refused(tmp_path: Path) -> None:
    """int16 numbers written into a FLOAT WAV would clip into a square wave."""
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "a.wav", "text": "да"}])
    sf.write(str(folder / "a.wav"), _sine() * 32767, RATE, subtype="FLOAT")
    message = _error(folder)
    assert "line 1" in message and "beyond the float full scale" in message
    assert "16383" in message  # the peak found


def test_zero_sample_wav_is_refused_with_its_line(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "a.wav", "text": "да"},
                                        {"audio_filepath": "empty.wav", "text": "нет"}])
    sf.write(str(folder / "a.wav"), _sine(), RATE, subtype="PCM_16")
    sf.write(str(folder / "empty.wav"), np.zeros(0, np.int16), RATE, subtype="PCM_16")
    assert sf.info(str(folder / "empty.wav")).frames == 0
    message = _error(folder)
    assert "line 2" in message and "empty.wav" in message and "no samples" in message
    with pytest.raises(DatasetError, match="no samples"):
        read_audio(folder / "empty.wav")


# -- references that normalise to nothing ------------------------------------------------

@pytest.mark.parametrize("text", ["...", "—!?", "hello world", "12 345", "OK 2"])
def test_reference_without_letters_of_the_alphabet_is_refused(tmp_path: Path,
                                                              text: str) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "a.wav", "text": "да"},
                                        {"audio_filepath": "b.wav", "text": text}])
    for name in ("a.wav", "b.wav"):
        sf.write(str(folder / name), _sine(), RATE, subtype="PCM_16")
    message = _error(folder)
    assert "line 2" in message and repr(text) in message and "normalised" in message


def test_score_refuses_a_reference_that_normalises_to_nothing() -> None:
    """Dropped, it scored one wrong hypothesis plus one right one as WER 0."""
    with pytest.raises(EvaluationError, match=r"utterance 1\) '\.\.\.'"):
        score(["...", "да"], ["нет", "да"])


# -- audio paths -------------------------------------------------------------------------

def test_nemo_style_subfolder_path_resolves(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", [
        {"audio_filepath": "audio/spk1/0001.wav", "text": "да"},
        {"audio_filepath": "audio/spk2/0001.wav", "text": "нет"},
        {"audio_filepath": "/far/away/flat.wav", "text": "может"}])
    for sub in ("audio/spk1", "audio/spk2"):
        (folder / sub).mkdir(parents=True)
        sf.write(str(folder / sub / "0001.wav"), _sine(), RATE, subtype="PCM_16")
    sf.write(str(folder / "flat.wav"), _sine(0.5), RATE, subtype="PCM_16")
    utterances = load_manifest(folder)
    assert [u.audio_path for u in utterances] == [
        folder / "audio/spk1/0001.wav", folder / "audio/spk2/0001.wav", folder / "flat.wav"]
    # Two folders may both hold a 0001.wav: the id keeps the folder.
    assert [u.id for u in utterances] == ["audio/spk1/0001", "audio/spk2/0001", "flat"]


def test_base_name_is_the_fallback_for_a_subfolder_path(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "wavs/a.wav", "text": "да"}])
    sf.write(str(folder / "a.wav"), _sine(), RATE, subtype="PCM_16")
    (utterance,) = load_manifest(folder)
    assert utterance.audio_path == folder / "a.wav" and utterance.id == "a"


@pytest.mark.parametrize("path", ["../outside.wav", "audio/../../outside.wav"])
def test_a_path_that_leaves_the_folder_is_refused(tmp_path: Path, path: str) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": path, "text": "да"}])
    sf.write(str(tmp_path / "outside.wav"), _sine(), RATE, subtype="PCM_16")
    sf.write(str(folder / "outside.wav"), _sine(), RATE, subtype="PCM_16")
    message = _error(folder)
    assert "line 1" in message and "leaves the dataset folder" in message and path in message


def test_missing_subfolder_audio_names_both_places_tried(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", [{"audio_filepath": "audio/x.wav", "text": "да"}])
    message = _error(folder)
    assert f"{folder / 'audio/x.wav'} nor {folder / 'x.wav'} does not exist" in message
