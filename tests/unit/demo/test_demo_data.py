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


def test_the_held_out_voice_never_speaks_training_audio() -> None:
    from demo.synth import ACCENT, FESTIVAL, HELD_OUT_BASE, plan_voice

    train = [plan_voice("train", 1, i) for i in range(20_000)]
    assert not any(v.name.startswith(HELD_OUT_BASE + "+") for v in train)
    assert sum(v.engine == FESTIVAL for v in train) > 1_400  # 8 %: festival is trained on
    accented = {v.name.split("+")[0] for v in train if v.group == ACCENT}
    assert accented == {"uk", "bg"}
    test = [plan_voice("test", 7, i) for i in range(240)]
    # The test set's voices are Russian ones: no accent of another language's voice.
    assert {v.group for v in test} == {"espeak", "espeak-held-out", FESTIVAL}
    assert plan_voice("test", 7, 3) == plan_voice("test", 7, 3)


def test_festival_speech_without_festival_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from demo import synth

    monkeypatch.setattr(synth, "find_festival", lambda: None)
    texts = generate_sentences(4, seed=11, split="test")  # utterance 1 is festival's
    with pytest.raises(SystemExit, match=r"1 utterances are festival's and .* does not hold "
                                         r"them: install festival and festvox-ru"):
        synth.prerender_festival("test", texts, 11, tmp_path / "cache")


@pytest.mark.skipif(shutil.which("festival") is None or shutil.which("sox") is None,
                    reason="festival/sox not installed (.ci/run installs them)")
def test_festival_speech_is_cached_and_read_back(tmp_path: Path) -> None:
    from demo.synth import festival_path, prerender_festival
    from sweep.data.manifest import read_audio

    texts = generate_sentences(4, seed=11, split="test")
    cache = tmp_path / "cache"
    assert prerender_festival("test", texts, 11, cache) == 1
    assert prerender_festival("test", texts, 11, cache) == 0  # kept, not spoken again
    assert festival_path(cache, "test", 11, 1).stat().st_size > 1000
    from demo.synth import synthesise

    rows = synthesise("test", 4, seed=11, out_dir=tmp_path / "ds", jobs=1, progress=False,
                      festival_cache=cache)
    assert rows[1]["voice_group"] == "festival"
    assert read_audio(tmp_path / "ds" / rows[1]["audio_filepath"]).std() > 50
