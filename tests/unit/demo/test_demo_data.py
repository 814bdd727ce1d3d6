"""The demo's sentence generator and synthesiser: seeded, split-disjoint, sweep-readable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from demo.texts import (
    MAX_WORDS,
    MIN_WORDS,
    generate_sentences,
    plural,
    spell,
    spell_group,
    split_of,
)
from sweep.data.text import LETTERS, normalize


def test_train_and_test_are_disjoint_for_large_n() -> None:
    train = set(generate_sentences(100_000, seed=0, split="train"))
    train |= set(generate_sentences(20_000, seed=1, split="train"))
    test = generate_sentences(5_000, seed=0, split="test")
    assert len(set(test)) == len(test)
    assert not train & set(test)
    assert all(split_of(s) == "test" for s in test)


def test_seeded_and_split_specific() -> None:
    assert generate_sentences(50, 3, "train") == generate_sentences(50, 3, "train")
    assert generate_sentences(50, 3, "train") != generate_sentences(50, 4, "train")
    with pytest.raises(ValueError, match="split"):
        generate_sentences(1, 0, "dev")


def test_sentences_are_normalised_words_without_digits() -> None:
    sentences = generate_sentences(3000, seed=2, split="train")
    allowed = set(LETTERS) | {" "}
    for s in sentences:
        assert set(s) <= allowed, s
        assert normalize(s, yo_to_ye=False) == s
        assert MIN_WORDS <= len(s.split()) <= MAX_WORDS
    vocabulary = {w for s in sentences for w in s.split()}
    assert len(vocabulary) > 600


def test_number_words() -> None:
    assert [plural(n, "рубль", "рубля", "рублей") for n in (1, 2, 5, 11, 14, 21, 22, 25, 111)] \
        == ["рубль", "рубля", "рублей", "рублей", "рублей", "рубль", "рубля", "рублей", "рублей"]
    assert spell(2, gender="f") == "две"
    assert spell(1234) == "одна тысяча двести тридцать четыре"
    assert spell_group("05") == "ноль пять"
    assert spell_group("007") == "ноль ноль семь"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthesised_dataset_loads_in_the_sweep(tmp_path: Path) -> None:
    from demo.synth import synthesise
    from sweep.data.manifest import load_manifest, read_audio

    rows = synthesise("test", 4, seed=11, out_dir=tmp_path / "ds", jobs=2, progress=False)
    utterances = load_manifest(tmp_path / "ds")
    assert [u.text for u in utterances] == [r["text"] for r in rows]
    for u in utterances:
        audio = read_audio(u.audio_path)
        assert audio.size == pytest.approx(u.duration * 8000, abs=1)
        assert 1.0 < u.duration < 15.0
        assert audio.std() > 50  # speech, not silence
