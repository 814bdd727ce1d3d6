"""References holding words T-one cannot output (digits, Latin, symbols) are refused at
manifest load, naming the line, the utterance and the words; ``out_of_alphabet=drop``
scores without them and counts the references altered. Punctuation, case, ё, hyphens and
stress marks stay normalised silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.config import DatasetSpec
from sweep.data.manifest import MANIFEST_NAME, altered_references, load_manifest
from sweep.data.text import normalize, out_of_alphabet
from sweep.errors import ConfigError, DatasetError
from sweep.evaluate.metrics import score
from tests.support.paths import DEMO

RATE = 8000


def _dataset(folder: Path, texts: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(texts, 1):
        name = f"utt_{i:04d}.wav"
        t = np.arange(RATE // 4) / RATE
        sf.write(str(folder / name), 0.5 * np.sin(2 * np.pi * 300 * t), RATE,
                 subtype="PCM_16")
        rows.append(json.dumps({"audio_filepath": name, "text": text}, ensure_ascii=False))
    (folder / MANIFEST_NAME).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _refusal(folder: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_manifest(folder)
    return str(info.value)


@pytest.mark.parametrize(("text", "words"), [
    ("в 2023 году", ["2023"]),                       # digits
    ("позвоните в Apple завтра", ["Apple"]),         # Latin
    ("тариф 5G за 300 рублей!", ["5G", "300"]),      # mixed, punctuation around
    ("скидка 10%", ["10%"]),                         # a symbol with its number
    ("сто % годовых", ["%"]),                        # read out, though Unicode's punctuation
    ("мoлоко", ["мoлоко"]),                          # one Latin 'o' in a Russian word
])
def test_words_outside_the_alphabet_are_found(text: str, words: list[str]) -> None:
    assert out_of_alphabet(text) == words


@pytest.mark.parametrize("text", [
    "Привет, мир!", "Ёлка — «как-то» так...", "ЖИЛИ-БЫЛИ", "мо\u0301локо",
    "и\u0306од",  # й typed as и plus a combining breve
])
def test_punctuation_case_yo_hyphens_and_stress_are_not_words(text: str) -> None:
    assert out_of_alphabet(text) == []


def test_stress_marks_and_decomposed_letters_keep_the_word_whole() -> None:
    """A stress mark was replaced by a space: 'мо́локо' scored as two words."""
    assert normalize("мо\u0301локо") == "молоко"
    assert normalize("и\u0306од") == "йод"


@pytest.mark.parametrize(("text", "named"), [
    ("в 2023 году", "holds '2023'"),
    ("звонок от John Smith", "holds 'John', 'Smith'"),
    ("тариф 5G за 300 рублей", "holds '5G', '300'"),
    ("мoлоко", "holds 'мoлоко' ('мoлоко' holds 'o' U+006F)"),
])
def test_a_reference_with_digits_or_latin_is_refused_naming_line_utterance_and_words(
        tmp_path: Path, text: str, named: str) -> None:
    folder = _dataset(tmp_path / "ds", ["да", text])
    message = _refusal(folder)
    assert message.startswith(f"{folder / MANIFEST_NAME} line 2 (utt_0002): "
                              f"text {text!r} {named}, which T-one's alphabet cannot output"), \
        message
    assert "dataset.out_of_alphabet=drop" in message


def test_drop_scores_without_them_and_counts_the_references_altered(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", ["в 2023 году", "привет", "звонок от John"])
    utterances = load_manifest(folder, out_of_alphabet="drop")
    assert [u.text for u in utterances] == ["в 2023 году", "привет", "звонок от John"]
    assert altered_references(utterances) == 2
    # Scored as the normalised texts: the dropped words are neither right nor wrong.
    assert score([u.text for u in utterances],
                 ["в году", "привет", "звонок от"]).wer == 0.0
    spec = DatasetSpec(name="ds", folder=folder, manifest=MANIFEST_NAME, limit=None,
                       sample_rate=RATE, out_of_alphabet="drop")
    assert altered_references(spec.load()) == 2
    with pytest.raises(DatasetError, match="line 1"):
        DatasetSpec(name="ds", folder=folder, manifest=MANIFEST_NAME, limit=None,
                    sample_rate=RATE).load()  # refuse is the default


def test_drop_still_refuses_a_reference_left_empty(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", ["да", "12 345"])
    with pytest.raises(DatasetError, match=r"line 2: 'text' '12 345' is empty once normalised"):
        load_manifest(folder, out_of_alphabet="drop")


def test_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "ds", ["да"])
    with pytest.raises(ConfigError, match=r"dataset\.out_of_alphabet='keep': expected one "
                                          r"of refuse, drop"):
        load_manifest(folder, out_of_alphabet="keep")


@pytest.mark.parametrize("name", ["demo_tiny", "demo_test", "demo_calib"])
def test_the_demo_manifests_load(name: str) -> None:
    utterances = load_manifest(DEMO / "data" / name)
    assert utterances and altered_references(utterances) == 0
