"""A large Russian lexicon for open-vocabulary training text, read from Debian's hunspell-ru.

The templates in ``demo/texts.py`` know about 1,250 words; a model trained on them alone
learns those words, not Russian. hunspell-ru's dictionary (``ru_RU.dic``, ~146,000 stems)
gives the open vocabulary: its lower-case stems (proper nouns are capitalised there) whose
letters are all in T-one's alphabet.

Every word has a fixed split by a hash of its text, like the sentences: about
``TEST_WORD_PERCENT`` % of the lexicon is test-only and never appears in training text,
so a test set can hold words the model has never heard. Words the templates use are always
training words (the templates are spoken in both splits).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path

from sweep.data.text import LETTERS

DEFAULT_DIC = "/usr/share/hunspell/ru_RU.dic"
DIC_ENV = "TRT_SWEEP_HUNSPELL_RU"
TEST_WORD_PERCENT = 12
MIN_LETTERS = 2
MAX_LETTERS = 14
ZIPF_OFFSET = 50
_ALPHABET = frozenset(LETTERS)


class LexiconError(FileNotFoundError):
    """The hunspell-ru dictionary is missing or holds no usable word."""


@dataclass(frozen=True)
class Lexicon:
    """Lexicon words by split, sorted so that seeded draws are reproducible."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    source: str

    @functools.cached_property
    def test_only(self) -> frozenset[str]:
        return frozenset(self.test)

    @functools.cached_property
    def train_cum_weights(self) -> list[float]:
        # Zipf's law over a fixed hash ranking: as in real text, a few thousand words make
        # most of the tokens and the rest is a long tail, so a test set's training words
        # are mostly ones the model has heard often.
        return list(itertools.accumulate(1.0 / (rank + ZIPF_OFFSET)
                                         for rank in range(len(self.train))))


def word_split(word: str) -> str:
    """The split a lexicon word belongs to, fixed by its hash alone."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8, person=b"lexicon").digest()
    return "test" if int.from_bytes(digest, "big") % 100 < TEST_WORD_PERCENT else "train"


def _rank(word: str) -> bytes:
    return hashlib.blake2b(word.encode("utf-8"), digest_size=8, person=b"rank").digest()


def dictionary_path(path: str | Path | None = None) -> Path:
    """The .dic to read: the argument, then ``$TRT_SWEEP_HUNSPELL_RU``, then Debian's path."""
    chosen = Path(path or os.environ.get(DIC_ENV) or DEFAULT_DIC)
    if not chosen.is_file():
        raise LexiconError(
            f"hunspell-ru dictionary {chosen} not found: install it (apt-get install "
            f"hunspell-ru) or give the path of a ru_RU.dic in ${DIC_ENV}"
        )
    return chosen


def read_stems(path: Path) -> list[str]:
    """The usable stems of a hunspell .dic: lower-case, in the alphabet, 2-14 letters."""
    words: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as f:
        next(f, None)  # the first line is the entry count
        for line in f:
            stem = line.split("/", 1)[0].strip()
            # Capitalised stems are names and places; the templates carry their own.
            if not stem or not stem.islower():
                continue
            if MIN_LETTERS <= len(stem) <= MAX_LETTERS and set(stem) <= _ALPHABET:
                words.add(stem)
    return sorted(words)


@functools.lru_cache(maxsize=4)
def load_lexicon(path: str | None = None) -> Lexicon:
    """Read and split the lexicon once per process (``generate_sentences`` draws from it)."""
    from demo.texts import template_vocabulary

    dic = dictionary_path(path)
    stems = read_stems(dic)
    if not stems:
        raise LexiconError(f"{dic} holds no lower-case Russian word; is it hunspell-ru's?")
    seen = template_vocabulary()
    train = tuple(sorted((w for w in stems if w in seen or word_split(w) == "train"),
                         key=_rank))
    test = tuple(w for w in stems if w not in seen and word_split(w) == "test")
    return Lexicon(train=train, test=test, source=str(dic))


def draw_words(lexicon: Lexicon, split: str, k: int, rng: random.Random,
               unseen_share: float) -> list[str]:
    """``k`` lexicon words for a sentence of ``split``.

    Training sentences use training words only. A test sentence takes each word from the
    test-only words with probability ``unseen_share`` and holds at least one, so that no
    lexicon test sentence can also be a training sentence.
    """
    def common() -> str:
        return rng.choices(lexicon.train, cum_weights=lexicon.train_cum_weights)[0]

    if split == "train":
        return [common() for _ in range(k)]
    words = [rng.choice(lexicon.test) if rng.random() < unseen_share else common()
             for _ in range(k)]
    if not any(w in lexicon.test_only for w in words):
        words[rng.randrange(k)] = rng.choice(lexicon.test)
    return words
