"""T-one's alphabet and the text normalisation applied before scoring.

Normalising drops what is not a word (punctuation, case, ё against е, hyphens, stress
marks) silently. A reference that holds words T-one cannot output (digits, Latin or other
letters, symbols such as % or №) would lose them silently too ("в 2023 году" scored as
"в году"): :func:`out_of_alphabet` finds them, so the manifest can be refused (or the
alteration counted, ``dataset.out_of_alphabet=drop``) before anything is scored.
"""

from __future__ import annotations

import re
import unicodedata

# The 33 Russian letters (with ё), then space; index 34 is the CTC blank: 35 outputs.
LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
VOCABULARY: tuple[str, ...] = (*LETTERS, " ")
BLANK_ID = len(VOCABULARY)  # 34
NUM_CLASSES = BLANK_ID + 1  # 35

_NOT_LETTER = re.compile(f"[^{LETTERS} ]+")
_SPACES = re.compile(r"\s+")


def _composed(text: str) -> str:
    """NFC, then without combining marks: й and ё typed as и/е plus a mark become the
    letters; a stress mark (мо́локо) goes without splitting the word in two."""
    text = unicodedata.normalize("NFC", text)
    return "".join(c for c in text if not unicodedata.category(c).startswith("M"))


def normalize(text: str, *, yo_to_ye: bool = True) -> str:
    """Lowercase, drop punctuation and anything outside the alphabet, squeeze spaces.

    ``yo_to_ye`` maps ё to е, as the seed's WER client does for both hypothesis and
    reference: annotators and TTS disagree on ё, and the mismatch is not an ASR error.
    """
    text = _composed(text).lower().replace("-", " ")
    if yo_to_ye:
        text = text.replace("ё", "е")
    text = _NOT_LETTER.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


# Unicode files these under punctuation, yet each is read out as a word ("процентов").
_SPOKEN_PUNCTUATION = frozenset("%‰‱#&@§")


def _punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] == "P" and char not in _SPOKEN_PUNCTUATION


def _silent(char: str) -> bool:
    """Whether normalising may drop ``char`` without altering a word: a letter of the
    alphabet (any case), white space, punctuation (hyphens and quotes included; not % or
    #, which are read out), a control character."""
    return (char.lower() in LETTERS or _punctuation(char) or char.isspace()
            or unicodedata.category(char)[0] in "ZC")


def out_of_alphabet(text: str) -> list[str]:
    """The words of ``text`` (between spaces, without their punctuation) that hold
    characters T-one cannot output: digits, letters of other alphabets, symbols (%, №, +).
    Empty when normalising alters nothing but punctuation, case, ё, hyphens and stress."""
    words = []
    for token in _composed(text).split():
        if not all(_silent(c) for c in token):
            words.append(token.strip("".join(c for c in token if _punctuation(c))))
    return words


def foreign_characters(word: str) -> str:
    """The characters of ``word`` outside the alphabet, each with its code point: what
    tells a Latin 'o' inside a Russian word from the Cyrillic one."""
    seen = dict.fromkeys(c for c in _composed(word) if not _silent(c))
    return ", ".join(f"{c!r} U+{ord(c):04X}" for c in seen)


def encode(text: str) -> list[int]:
    """Label ids of an already normalised text (ё kept: it is in the alphabet)."""
    index = {c: i for i, c in enumerate(VOCABULARY)}
    try:
        return [index[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is outside T-one's alphabet") from exc
