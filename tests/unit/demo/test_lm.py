"""The demo's Kneser-Ney 3-gram estimator: normalised distributions, valid ARPA for KenLM."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from demo.lm import BOS, EOS, UNK, Arpa, build, count_ngrams, discounts, estimate, prune

TOY = [
    "мой номер восемь девять",
    "мой номер семь восемь",
    "мой заказ номер пять",
    "номер заказа пять пять",
    "да конечно",
    "да спасибо",
    "нет спасибо",
    "мой адрес улица ленина дом пять",
    "улица ленина дом семь",
    "спасибо до свидания",
    "мой номер восемь девять",
]


def _contexts(arpa: Arpa) -> list[tuple[str, ...]]:
    """The empty context, some seen contexts of each order and unseen ones."""
    seen_bigrams = [g[:1] for g in arpa.prob[1]][:5]
    seen_trigrams = [g[:2] for g in arpa.prob[2]][:5]
    return [(), (BOS,), (BOS, "мой"), ("мой", "номер"), ("да", "спасибо"),
            ("ленина", "мой"), ("никогда", "не"), *seen_bigrams, *seen_trigrams]


def _vocab(arpa: Arpa) -> list[str]:
    return [g[0] for g in arpa.prob[0] if g[0] != BOS]


@pytest.mark.parametrize("min_counts", [(1, 1, 1), (1, 1, 2), (1, 2, 2)])
def test_every_context_sums_to_one(min_counts: tuple[int, int, int]) -> None:
    model, raw = estimate(TOY)
    arpa = prune(model, raw, min_counts)
    vocab = _vocab(arpa)
    assert UNK in vocab and EOS in vocab and BOS not in vocab
    for context in _contexts(arpa):
        total = sum(arpa.p(context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_unpruned_interpolated_model_sums_to_one() -> None:
    model, _ = estimate(TOY)
    for context in [(), (BOS,), ("мой",), (BOS, "мой"), ("мой", "номер"), ("x", "y")]:
        total = sum(model.interpolated(context, w) for w in model.vocab)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_pruning_keeps_prefixes_and_suffixes() -> None:
    model, raw = estimate(TOY)
    arpa = prune(model, raw, (1, 2, 2))
    assert ("мой", "номер", "восемь") in arpa.prob[2]
    assert ("да", "конечно") not in arpa.prob[1]
    for n in (2, 3):
        for gram in arpa.prob[n - 1]:
            assert gram[:-1] in arpa.prob[n - 2] or gram[:-1] == (BOS,)
            assert gram[1:] in arpa.prob[n - 2]


def test_discounts_follow_count_of_counts() -> None:
    # Without every count-of-count up to 4, the safe fallback applies.
    assert discounts(count_ngrams(["а б в"])[1]) == (0.5, 1.0, 1.5)
    # Closed form on a hand-made count-of-counts: n1=4, n2=2, n3=1, n4=1.
    table = {("a", str(i)): c for i, c in enumerate([1, 1, 1, 1, 2, 2, 3, 4])}
    y = 4 / (4 + 2 * 2)
    expected = (1 - 2 * y * 2 / 4, 2 - 3 * y * 1 / 2, 3 - 4 * y * 1 / 1)
    assert discounts(table) == pytest.approx(expected)  # type: ignore[arg-type]


def test_kenlm_loads_arpa_and_agrees(tmp_path: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    path = tmp_path / "toy.arpa"
    arpa = build(TOY, path, (1, 1, 2))
    lm = kenlm.Model(str(path))
    assert lm.order == 3
    sentence = "мой номер восемь девять"
    words = sentence.split()
    shuffled = " ".join(reversed(words))
    assert lm.score(sentence) > lm.score(shuffled)
    # KenLM's per-word log10 probabilities equal the estimator's own backoff arithmetic.
    ours = []
    context: tuple[str, ...] = (BOS,)
    for w in [*words, EOS]:
        ours.append(math.log10(arpa.p(context, w)))
        context = (*context, w)[-2:]
    theirs = [score for score, _, _ in lm.full_scores(sentence)]
    assert theirs == pytest.approx(ours, abs=1e-4)
    assert lm.score("совсем незнакомые слова") < lm.score("да спасибо")


def test_generated_corpus_model_prefers_real_sentences(tmp_path: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    from demo.texts import generate_sentences

    train = generate_sentences(3000, seed=5, split="train")
    path = tmp_path / "gen.arpa"
    build(train, path)
    lm = kenlm.Model(str(path))
    rng = random.Random(0)
    better = 0
    # Template sentences: lexicon runs are random words, with no order to prefer.
    test = generate_sentences(50, seed=5, split="test", lexicon=False)
    for sentence in test:
        words = sentence.split()
        shuffled = words[:]
        while shuffled == words and len(set(words)) > 1:
            rng.shuffle(shuffled)
        better += lm.score(sentence) > lm.score(" ".join(shuffled))
    assert better >= 45
