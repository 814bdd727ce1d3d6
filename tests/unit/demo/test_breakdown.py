"""demo.breakdown's word table: which reference words are wrong, and which wrong spellings
eSpeak pronounces exactly as the word."""

from __future__ import annotations

import shutil

import pytest

from demo.breakdown import OTHER, SEEN, TEST_ONLY, count_homophones, espeak_phonemes, tally_words

TRAINING = {"кот", "спит", "дома", "мама"}
TEST_ONLY_WORDS = {"пермяк"}


def kind_of(word: str) -> str:
    return SEEN if word in TRAINING else TEST_ONLY if word in TEST_ONLY_WORDS else OTHER


def test_words_are_tallied_by_kind_from_the_alignment() -> None:
    tallies, inserted = tally_words(
        ["Кот спит дома", "мама", "пермяк ушёл", ""],
        ["кот спит дама", "мама мыла", "пермяг", "лишнее"], kind_of)
    seen, test_only, other = tallies[SEEN], tallies[TEST_ONLY], tallies[OTHER]
    assert (seen.tokens, seen.wrong, seen.swaps) == (4, 1, [("дома", "дама")])
    assert (test_only.tokens, test_only.wrong) == (1, 1)
    # "ушёл" (ё folded) was deleted, not replaced: wrong, but no swap to compare.
    assert (other.tokens, other.wrong, other.swaps) == (1, 1, [])
    assert test_only.swaps == [("пермяк", "пермяг")]
    assert inserted == 1  # "мыла"; the utterance with an empty reference is not scored


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_a_homophone_is_a_spelling_espeak_says_the_same_way() -> None:
    said = espeak_phonemes(["пермяк", "пермяг", "кот", "кит"])
    assert said["пермяк"] == said["пермяг"]  # a final г is devoiced
    assert said["кот"] != said["кит"]
    tallies, _ = tally_words(["пермяк кот"], ["пермяг кит"], kind_of)
    count_homophones(tallies, said)
    assert (tallies[TEST_ONLY].homophones, tallies[SEEN].homophones) == (1, 0)
