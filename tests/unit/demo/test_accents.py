"""Accented training voices: Ukrainian and Bulgarian eSpeak reading respelled Russian."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from demo.accents import ALPHABETS, LANGUAGES, respell
from demo.texts import generate_sentences
from sweep.data.text import LETTERS

EVERY_LETTER = "съешь же ещё этих мягких французских булок да выпей чаю объём подъезд ёж"


def test_every_russian_letter_becomes_one_the_voice_reads() -> None:
    assert set(LETTERS) <= set(EVERY_LETTER) | {"ё"} and "ё" in EVERY_LETTER
    for language in LANGUAGES:
        spoken = respell(EVERY_LETTER, language)
        assert set(spoken) <= ALPHABETS[language], (language, set(spoken) - ALPHABETS[language])
        assert len(spoken.split()) == len(EVERY_LETTER.split())  # word for word
    # The sounds that carry the accent are kept, the letters a voice would name are replaced.
    assert respell("ёлка и мыши", "uk") == "йолка і миші"
    assert respell("подъезд щётка", "bg") == "подйезд шчьотка"
    with pytest.raises(ValueError, match="no respelling for 'pl'"):
        respell("да", "pl")


# Vowels of eSpeak's phoneme mnemonics (-x) in these languages; "@" is left out: it is the
# short schwa eSpeak puts inside consonant clusters such as "пр".
_PHONEME_VOWELS = frozenset("aeiouyAEIOUV8036")
_RUSSIAN_VOWELS = frozenset("аеёиоуыэюя")
# Words that once made a voice name letters or expand an abbreviation ("год" -> "година").
TROUBLE = "есть съел год года ул платье пьеса подъезд вьюга соловьи"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_the_accent_voices_say_each_word_without_naming_letters(tmp_path: Path) -> None:
    # A voice that lacks a letter names it ("ы" as "еру", "с" as "эс"), at times in another
    # language ("(en)" in its phoneme output); one that knows an abbreviation expands it.
    # Either way the word gains syllables: each word (said alone) may have at most one vowel
    # more than its Russian spelling.
    sentences = [EVERY_LETTER, TROUBLE, *generate_sentences(200, seed=5, split="train")]
    words = sorted({w for s in sentences for w in s.split() if set(w) & _RUSSIAN_VOWELS})
    for language in LANGUAGES:
        text = tmp_path / f"{language}.txt"
        # One clause per word, so that eSpeak prints one line of phonemes per word.
        text.write_text("".join(respell(w, language) + ".\n" for w in words), encoding="utf-8")
        proc = subprocess.run(["espeak-ng", "-v", language, "-q", "-x", "-f", str(text)],
                              capture_output=True, text=True, check=True, timeout=120)
        said = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(said) == len(words)
        named = [(w, p) for w, p in zip(words, said, strict=True)
                 if "(" in p or sum(c in _PHONEME_VOWELS for c in p)
                 > sum(c in _RUSSIAN_VOWELS for c in w) + 1]
        assert not named, (language, named[:5])


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng/sox not installed (.ci/run installs them)")
def test_an_accented_training_utterance_is_rendered_from_the_respelled_text(
        tmp_path: Path) -> None:
    from demo.synth import ACCENT, find_espeak, plan_voice, render

    index = next(i for i in range(200) if plan_voice("train", 1, i).group == ACCENT)
    text = generate_sentences(index + 1, seed=1, split="train")[index]
    audio, voice, _ = render(text, 1, index, find_espeak(), str(tmp_path), split="train")
    assert voice.group == ACCENT and voice.name.split("+")[0] in LANGUAGES
    assert audio.size > 8000 and audio.std() > 50  # speech, not an error read aloud
