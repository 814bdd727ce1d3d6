"""Word 3-gram language model for the demo: interpolated modified Kneser-Ney, written as ARPA.

KenLM's estimator (``lmplz``) is not packaged for Debian, so this is a small, exact
implementation (Chen & Goodman's modified Kneser-Ney with three discounts per order,
interpolated, lower orders on continuation counts, n-grams starting with ``<s>`` on raw
counts, the unigram level interpolated with the uniform distribution). Pruning drops
n-grams below a raw count; the backoff weights are then recomputed so that every
context's distribution, as the ARPA file represents it, still sums to one.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
ORDER = 3
Gram = tuple[str, ...]


def count_ngrams(sentences: Iterable[str], order: int = ORDER) -> list[Counter[Gram]]:
    """Raw counts of every order, sentences padded with a single <s> and </s>."""
    counts: list[Counter[Gram]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            table = counts[n - 1]
            for i in range(len(words) - n + 1):
                table[tuple(words[i : i + n])] += 1
    # <s> is a context only: it is never predicted, so it has no unigram count.
    counts[0].pop((BOS,), None)
    return counts


def adjusted_counts(raw: list[Counter[Gram]]) -> list[Counter[Gram]]:
    """Kneser-Ney counts: highest order raw, lower orders count distinct left extensions.

    An n-gram that starts with <s> cannot be extended to the left, so it keeps its raw count.
    """
    order = len(raw)
    adjusted: list[Counter[Gram]] = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(raw[-1])
    for n in range(order, 1, -1):
        for gram in raw[n - 1]:
            if gram[1] != BOS:
                adjusted[n - 2][gram[1:]] += 1
    for n in range(1, order):
        for gram, count in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = count
    return adjusted


def discounts(counts: Counter[Gram]) -> tuple[float, float, float]:
    """Modified KN discounts D1, D2, D3+ from the count-of-counts of one order.

    Tiny corpora can lack some count-of-counts; the discounts then fall back to values
    that keep every discounted count positive.
    """
    n = [0] * 5
    for c in counts.values():
        if c <= 4:
            n[c] += 1
    fallback = (0.5, 1.0, 1.5)
    if min(n[1:5]) == 0:
        return fallback
    y = n[1] / (n[1] + 2 * n[2])
    ds = (1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3])
    if not all(0 < d < k for d, k in zip(ds, (1, 2, 3), strict=True)):
        return fallback
    return ds


@dataclass
class KneserNey:
    """Interpolated modified Kneser-Ney probabilities for every observed n-gram."""

    vocab: list[str]  # predicted words: every word, </s> and <unk>, not <s>
    prob: list[dict[Gram, float]] = field(default_factory=list)  # p(w | h) per order
    gamma: list[dict[Gram, float]] = field(default_factory=list)  # leftover mass per context

    def interpolated(self, context: Gram, word: str) -> float:
        """p(word | context) of the unpruned model (any word, seen or not)."""
        gram = (*context, word)
        n = len(gram)
        if gram in self.prob[n - 1]:
            return self.prob[n - 1][gram]
        if n == 1:
            return self.gamma[0][()] / len(self.vocab)
        return self.gamma[n - 1].get(context, 1.0) * self.interpolated(context[1:], word)


def estimate(sentences: Iterable[str], order: int = ORDER) -> tuple[KneserNey, list[Counter[Gram]]]:
    raw = count_ngrams(sentences, order)
    adjusted = adjusted_counts(raw)
    vocab = sorted({g[0] for g in raw[0]} | {UNK})
    model = KneserNey(vocab)
    for n in range(1, order + 1):
        d1, d2, d3 = discounts(adjusted[n - 1])
        totals: dict[Gram, float] = defaultdict(float)
        kinds: dict[Gram, list[int]] = defaultdict(lambda: [0, 0, 0])
        for gram, c in adjusted[n - 1].items():
            totals[gram[:-1]] += c
            kinds[gram[:-1]][min(c, 3) - 1] += 1
        gamma = {
            h: (d1 * k[0] + d2 * k[1] + d3 * k[2]) / totals[h] for h, k in kinds.items()
        }
        model.gamma.append(gamma)
        probs: dict[Gram, float] = {}
        for gram, c in adjusted[n - 1].items():
            h = gram[:-1]
            discounted = max(c - (d1, d2, d3)[min(c, 3) - 1], 0.0) / totals[h]
            lower = (1.0 / len(vocab)) if n == 1 else model.interpolated(h[1:], gram[-1])
            probs[gram] = discounted + gamma[h] * lower
        if n == 1:
            probs[(UNK,)] = gamma[()] / len(vocab)
        model.prob.append(probs)
    return model, raw


@dataclass
class Arpa:
    """A backoff model as ARPA stores it: log-free probabilities and backoff weights."""

    order: int
    prob: list[dict[Gram, float]]
    backoff: list[dict[Gram, float]]

    def p(self, context: Gram, word: str) -> float:
        """p(word | context) following ARPA's backoff rule."""
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        weight = 1.0
        while True:
            gram = (*context, word)
            found = self.prob[len(gram) - 1].get(gram)
            if found is not None:
                return weight * found
            if not context:
                return weight * self.prob[0][(UNK,)]
            weight *= self.backoff[len(context) - 1].get(context, 1.0)
            context = context[1:]


def prune(model: KneserNey, raw: list[Counter[Gram]], min_counts: Sequence[int]) -> Arpa:
    """Keep n-grams whose raw count reaches ``min_counts[n-1]``; renormalise the backoffs.

    Raw counts shrink as n-grams grow, so every kept n-gram's prefix and suffix are kept too.
    Unigrams are never pruned.
    """
    order = len(model.prob)
    arpa = Arpa(order, [dict(model.prob[0])], [])
    for n in range(2, order + 1):
        kept = {g: p for g, p in model.prob[n - 1].items() if raw[n - 1][g] >= min_counts[n - 1]}
        arpa.prob.append(kept)
    for n in range(1, order):
        # Backoff of context h (order n): the mass its kept extensions leave, spread over
        # the lower-order distribution minus the words those extensions already cover.
        left: dict[Gram, float] = defaultdict(lambda: 1.0)
        covered: dict[Gram, float] = defaultdict(lambda: 1.0)
        lower_arpa = Arpa(n, arpa.prob[:n], arpa.backoff[: n - 1])
        for gram, p in arpa.prob[n].items():
            h = gram[:-1]
            left[h] -= p
            covered[h] -= lower_arpa.p(h[1:], gram[-1])
        arpa.backoff.append({h: max(left[h], 1e-12) / max(covered[h], 1e-12) for h in left})
    return arpa


def _log10(x: float) -> str:
    return f"{math.log10(x):.6f}" if x > 0 else "-99"


def write_arpa(arpa: Arpa, path: Path) -> None:
    """ARPA text; <s> gets probability 0 (-99) as it is never predicted."""
    unigrams = dict(arpa.prob[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        f.write(f"ngram 1={len(unigrams) + 1}\n")
        for n in range(2, arpa.order + 1):
            f.write(f"ngram {n}={len(arpa.prob[n - 1])}\n")
        for n in range(1, arpa.order + 1):
            f.write(f"\n\\{n}-grams:\n")
            table = arpa.prob[n - 1]
            rows = sorted(table.items())
            if n == 1:
                rows.insert(0, ((BOS,), 0.0))
            for gram, p in rows:
                line = f"{_log10(p)}\t{' '.join(gram)}"
                if n < arpa.order and gram in arpa.backoff[n - 1]:
                    line += f"\t{_log10(arpa.backoff[n - 1][gram])}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def build(sentences: Iterable[str], out: Path, min_counts: Sequence[int] = (1, 1, 2)) -> Arpa:
    model, raw = estimate(sentences)
    arpa = prune(model, raw, min_counts)
    write_arpa(arpa, out)
    return arpa


def main(argv: list[str] | None = None) -> None:
    from demo.texts import generate_sentences

    parser = argparse.ArgumentParser(description="Build the demo's 3-gram ARPA model.")
    parser.add_argument("--n", type=int, default=200_000, help="training sentences")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-bigram-count", type=int, default=1)
    parser.add_argument("--min-trigram-count", type=int, default=2,
                        help="drop rarer trigrams (2 prunes singletons)")
    args = parser.parse_args(argv)
    sentences = generate_sentences(args.n, args.seed, "train")
    arpa = build(sentences, args.out, (1, args.min_bigram_count, args.min_trigram_count))
    sizes = ", ".join(f"{n + 1}-grams {len(t)}" for n, t in enumerate(arpa.prob))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB; {sizes})")


if __name__ == "__main__":
    main()
