"""The open vocabulary: hunspell-ru's stems, split by word, never leaking into training text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from demo import lexicon
from demo.lexicon import Lexicon, LexiconError, draw_words, read_stems, word_split
from demo.texts import LEXICON_SHARE, generate_sentences, template_vocabulary

HAS_DICTIONARY = Path(lexicon.DEFAULT_DIC).is_file()
needs_dictionary = pytest.mark.skipif(not HAS_DICTIONARY,
                                      reason="hunspell-ru is not installed (.ci/run installs it)")


def test_stems_are_lower_case_words_of_the_alphabet(tmp_path: Path) -> None:
    dic = tmp_path / "ru_RU.dic"
    dic.write_text("7\nМосква/J\nкошка/A\nёлка\nя\nhello/B\nпол-литра\nдлинноеслововпятнадцать\n",
                   encoding="utf-8")
    # Names are capitalised, 'я' is one letter, Latin and hyphens are outside the alphabet,
    # and the last is 23 letters.
    assert read_stems(dic) == ["кошка", "ёлка"]


def test_missing_dictionary_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lexicon.DIC_ENV, str(tmp_path / "nope.dic"))
    with pytest.raises(LexiconError, match=r"nope\.dic not found: install it \(apt-get install "
                                           r"hunspell-ru\)"):
        lexicon.dictionary_path()


def test_word_split_is_fixed_by_the_word() -> None:
    words = [f"слово{i}" for i in range(5000)]
    test = [w for w in words if word_split(w) == "test"]
    assert [word_split(w) for w in words] == [word_split(w) for w in words]
    assert 0.09 < len(test) / len(words) < 0.15  # TEST_WORD_PERCENT = 12


def test_a_test_run_always_holds_an_unseen_word() -> None:
    lex = Lexicon(train=("да", "нет", "дом"), test=("кот",), source="inline")
    rng = random.Random(0)
    for _ in range(200):
        assert "кот" in draw_words(lex, "test", 3, rng, unseen_share=0.0)
        assert "кот" not in draw_words(lex, "train", 3, rng, unseen_share=1.0)


@needs_dictionary
def test_training_text_never_has_a_test_only_word() -> None:
    lex = lexicon.load_lexicon()
    assert len(lex.train) > 100_000 and len(lex.test) > 10_000
    assert not lex.test_only & template_vocabulary()
    train_words = {w for s in generate_sentences(20_000, 1, "train") for w in s.split()}
    assert not train_words & lex.test_only
    # Half the training sentences are lexicon runs: far more words than the templates know.
    assert len(train_words) > 10 * len(template_vocabulary()) * LEXICON_SHARE["train"]


@needs_dictionary
def test_a_test_set_has_many_words_no_training_text_has() -> None:
    train_words = {w for s in generate_sentences(40_000, 1, "train") for w in s.split()}
    test = generate_sentences(240, 7, "test")
    distinct = {w for s in test for w in s.split()}
    unseen = distinct - train_words
    assert len(unseen) / len(distinct) >= 0.30
