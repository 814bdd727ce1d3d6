"""Russian text respelled for the espeak-ng voices of two neighbouring languages.

A model trained on eSpeak's one Russian voice learns its accent: reduced unstressed vowels
(о heard as а), one л, one г. Real callers, and the test set's held-out voice, speak
otherwise. Ukrainian and Bulgarian eSpeak read Russian words with their own phonology
(unreduced о, г as [ɦ], their own stress rules and vowels), which is what a speaker of
those languages does with Russian. Their voices lack some Russian letters, and would spell
those out by name ("ы" as "еру"), so each letter they lack is written as the sound they
would make of it. The transcript stays the Russian text: only what the voice reads changes.

Training only: the test set's voices are Russian ones (``demo.synth.VOICE_SHARES``).
"""

from __future__ import annotations

_VOWELS = frozenset("аеёиоуыэюя")
# After these (or at a word's start) Russian е, ё sound with a [j] before them.
_IOTATING = _VOWELS | frozenset(" ")
# A separating sign before an iotated vowel: both voices read "й" + the plain vowel, where
# "ъе", "ье" (Ukrainian "'є", "ьє") would make eSpeak split the word and name a lone
# consonant ("съел" as "эс єл").
_SEPARATED = {sign + vowel: "й" + plain for sign in "ъь"
              for vowel, plain in (("е", "е"), ("ё", "о"), ("я", "а"), ("ю", "у"), ("и", "и"))}

LANGUAGES = ("uk", "bg")


def _separate(text: str, pairs: tuple[str, ...]) -> str:
    for pair in pairs:
        text = text.replace(pair, _SEPARATED[pair])
    return text


def _ukrainian(text: str) -> str:
    # Ukrainian keeps ь before ё, я, ю, и ("пьёт" reads well as "пьот"); ъ and ье go.
    text = _separate(text, ("ъе", "ъё", "ъя", "ъю", "ъи", "ье")).replace("ъ", "")
    out = []
    prev = " "
    for ch in text:
        if ch == "и":
            r = "і"  # Russian и is Ukrainian і ([i]); Ukrainian и is [ɪ], near Russian ы
        elif ch == "ы":
            r = "и"
        elif ch == "э":
            r = "е"
        elif ch == "е":
            # The same [jɛ] either way, but eSpeak spells out "єст", "єсть".
            r = "йе" if prev == " " else ("є" if prev in _IOTATING else "е")
        elif ch == "ё":
            r = "йо" if prev in _IOTATING else ("о" if prev == "ь" else "ьо")
        else:
            r = ch
        out.append(r)
        prev = ch
    return "".join(out)


# Words Bulgarian eSpeak reads as its own abbreviations ("год" as "година"), written as it
# says them otherwise (final devoicing).
_BULGARIAN_WORDS = {"год": "гот", "года": "гота", "ул": "улл"}


def _bulgarian(text: str) -> str:
    text = " ".join(_BULGARIAN_WORDS.get(w, w) for w in text.split(" "))
    # Bulgarian ъ is a vowel and its ь stands only before о: both signs go.
    text = _separate(text, tuple(_SEPARATED))
    out = []
    prev = " "
    for ch in text.replace("ъ", "").replace("ь", ""):
        if ch == "ы":
            r = "и"
        elif ch == "э":
            r = "е"
        elif ch == "ё":
            r = "йо" if prev in _IOTATING else "ьо"
        elif ch == "щ":
            r = "шч"  # Bulgarian щ is [ʃt]
        else:
            r = ch
        out.append(r)
        prev = ch
    return "".join(out)


_RESPELL = {"uk": _ukrainian, "bg": _bulgarian}

# Each language's own letters and the space: what its voice reads as sound.
ALPHABETS = {
    "uk": frozenset("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя "),
    "bg": frozenset("абвгдежзийклмнопрстуфхцчшщъьюя "),
}


def respell(text: str, language: str) -> str:
    """Normalised Russian text (T-one's alphabet, with ё) as ``language``'s voice reads it."""
    try:
        return _RESPELL[language](text)
    except KeyError:
        raise ValueError(f"no respelling for {language!r}; expected one of {LANGUAGES}") from None
