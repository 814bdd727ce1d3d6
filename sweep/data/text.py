"""T-one's alphabet and the text normalisation applied before scoring."""

from __future__ import annotations

import re

# The 33 Russian letters (with ё), then space; index 34 is the CTC blank: 35 outputs.
LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
VOCABULARY: tuple[str, ...] = (*LETTERS, " ")
BLANK_ID = len(VOCABULARY)  # 34
NUM_CLASSES = BLANK_ID + 1  # 35

_NOT_LETTER = re.compile(f"[^{LETTERS} ]+")
_SPACES = re.compile(r"\s+")


def normalize(text: str, *, yo_to_ye: bool = True) -> str:
    """Lowercase, drop punctuation and anything outside the alphabet, squeeze spaces.

    ``yo_to_ye`` maps ё to е, as the seed's WER client does for both hypothesis and
    reference: annotators and TTS disagree on ё, and the mismatch is not an ASR error.
    """
    text = text.lower().replace("-", " ")
    if yo_to_ye:
        text = text.replace("ё", "е")
    text = _NOT_LETTER.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def encode(text: str) -> list[int]:
    """Label ids of an already normalised text (ё kept: it is in the alphabet)."""
    index = {c: i for i, c in enumerate(VOCABULARY)}
    try:
        return [index[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is outside T-one's alphabet") from exc
