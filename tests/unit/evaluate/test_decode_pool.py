"""Beam search with KenLM, and the process pool that decodes off the streaming path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.data.text import BLANK_ID, VOCABULARY
from sweep.errors import ConfigError, EvaluationError
from sweep.evaluate.decode import (
    BeamDecoder,
    DecodePool,
    DecoderSpec,
    GreedyDecoder,
    decode_all,
)

WORDS = {"дом": -0.6, "кот": -0.8, "да": -0.9, "нет": -0.9, "мир": -1.2}


def _arpa(path: Path) -> Path:
    """A bigram ARPA (KenLM needs at least order 2) that knows a few words only."""
    lines = ["\\data\\", f"ngram 1={len(WORDS) + 3}", "ngram 2=2", "", "\\1-grams:",
             "-3.0\t<unk>\t0", "-99\t<s>\t-0.3", "-1.0\t</s>\t0",
             *(f"{p}\t{w}\t-0.3" for w, p in WORDS.items()), "", "\\2-grams:",
             "-0.2\t<s> дом", "-0.2\tдом да", "", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _arpa(tmp_path_factory.mktemp("lm") / "tiny.arpa")


def _frames(spec: list[dict[str, float]]) -> np.ndarray:
    """(frames, 35) log-probs; each frame names its probable letters, the rest share
    what is left."""
    out = np.empty((len(spec), len(VOCABULARY) + 1), np.float32)
    for i, probs in enumerate(spec):
        ids = {(BLANK_ID if c == "_" else VOCABULARY.index(c)): p for c, p in probs.items()}
        rest = (1.0 - sum(ids.values())) / (out.shape[1] - len(ids))
        row = np.full(out.shape[1], rest)
        for k, p in ids.items():
            row[k] = p
        out[i] = np.log(row)
    return out


def _sure(text: str) -> list[dict[str, float]]:
    frames: list[dict[str, float]] = [{"_": 0.95}]
    for c in text:
        frames += [{c: 0.95}, {"_": 0.95}]
    return frames


# "дом да": the last letter of the first word sounds more like "в" ("дов" is no word) and
# the second word's vowel leans to "ы" ("ды" is no word either).
AMBIGUOUS = _frames([*_sure("до"), {"в": 0.52, "м": 0.45}, {"_": 0.95}, {" ": 0.95},
                     {"_": 0.95}, {"д": 0.95}, {"ы": 0.5, "а": 0.47}, {"_": 0.95}])


def test_beam_with_lm_beats_greedy_on_ambiguous_logprobs(lm: Path):
    assert GreedyDecoder().decode(AMBIGUOUS) == "дов ды"
    assert BeamDecoder(lm, beam_width=50).decode(AMBIGUOUS) == "дом да"
    # Without the LM, beam search follows the acoustics like greedy does.
    assert BeamDecoder(None, beam_width=50).decode(AMBIGUOUS) == "дов ды"


def _utterances(n: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(3)
    out = {}
    for i in range(n):
        words = [list(WORDS)[j] for j in rng.randint(0, len(WORDS), size=3)]
        frames = _frames(_sure(" ".join(words)))
        # Noise that keeps decoding quick but makes the LM matter now and then.
        frames += rng.randn(*frames.shape).astype(np.float32) * 0.8
        out[f"utt{i}"] = frames - np.log(np.exp(frames).sum(-1, keepdims=True))
    return out


def test_pool_returns_the_same_texts_as_in_process_decoding(lm: Path):
    spec = DecoderSpec(name="beam", kenlm_path=str(lm), beam_width=32)
    utterances = _utterances(6)
    decoder = spec.build()
    expected = {uid: decoder.decode(lp) for uid, lp in utterances.items()}
    with DecodePool(spec, workers=2) as pool:
        for uid, lp in utterances.items():
            pool.submit(uid, lp)
        texts = pool.results()
        assert set(pool.seconds) == set(utterances)
        assert all(s >= 0 for s in pool.seconds.values())
    assert texts == expected
    assert list(texts) == list(utterances)  # submission order
    assert decode_all(spec, utterances, workers=0) == expected


def test_pool_inline_greedy():
    utterances = _utterances(3)
    with DecodePool(DecoderSpec(), workers=0) as pool:
        for uid, lp in utterances.items():
            pool.submit(uid, lp)
        texts = pool.results()
    assert texts == {uid: GreedyDecoder().decode(lp) for uid, lp in utterances.items()}


def test_pool_reports_a_decoder_that_cannot_be_built(tmp_path: Path):
    spec = DecoderSpec(name="beam", kenlm_path=str(tmp_path / "missing.arpa"))
    with pytest.raises(EvaluationError, match=r"missing\.arpa"), DecodePool(spec, workers=1):
        pass


def test_pool_reports_bad_logprobs_with_the_utterance(lm: Path):
    with DecodePool(DecoderSpec(name="beam", kenlm_path=str(lm), beam_width=8), 1) as pool:
        pool.submit("bad", np.zeros((5, 7), np.float32))
        with pytest.raises(EvaluationError, match=r"bad.*frames, 35"):
            pool.results()


def test_pool_refuses_misuse():
    pool = DecodePool(DecoderSpec(), workers=0)
    with pytest.raises(EvaluationError, match="outside"):
        pool.submit("a", np.zeros((1, 35)))
    with pool, pytest.raises(EvaluationError, match="twice"):
        pool.submit("a", np.zeros((1, 35)))
        pool.submit("a", np.zeros((1, 35)))
    with pytest.raises(ConfigError):
        DecodePool(DecoderSpec(), workers=-1)
    with pytest.raises(ConfigError):
        DecoderSpec(name="viterbi")


def test_spec_from_config_resolves_the_lm_path(tmp_path: Path):
    spec = DecoderSpec.from_config({"name": "beam", "kenlm_path": "lm.arpa", "beam_width": 8,
                                    "alpha": 0.5, "beta": 1.0, "workers": 2},
                                   resolve=lambda p: tmp_path / p)
    assert spec == DecoderSpec("beam", str(tmp_path / "lm.arpa"), 8, 0.5, 1.0)
    assert DecoderSpec.from_config({"name": "greedy", "kenlm_path": None}).kenlm_path is None
