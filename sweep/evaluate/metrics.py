"""Scores and timing figures of one evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from sweep.data.text import normalize
from sweep.errors import EvaluationError

# The bootstrap: resamples of the utterances (with replacement), a fixed seed so the same
# transcripts always give the same interval.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Scores:
    wer: float
    cer: float
    # 95 % bootstrap intervals over utterances (NaN where there is one utterance only).
    wer_ci: tuple[float, float] = (math.nan, math.nan)
    cer_ci: tuple[float, float] = (math.nan, math.nan)

    def metrics(self) -> dict[str, float]:
        return {"wer": self.wer, "cer": self.cer,
                "wer_ci_low": self.wer_ci[0], "wer_ci_high": self.wer_ci[1],
                "cer_ci_low": self.cer_ci[0], "cer_ci_high": self.cer_ci[1]}


def _edits(refs: list[str], hyps: list[str], chars: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: (errors, reference length) in words or characters, from jiwer's
    alignment, so that sum(errors) / sum(lengths) is jiwer's corpus rate."""
    out = jiwer.process_characters(refs, hyps) if chars else jiwer.process_words(refs, hyps)
    errors, lengths = [], []
    for alignment, ref in zip(out.alignments, out.references, strict=True):
        e = sum((a.ref_end_idx - a.ref_start_idx) if a.type in ("substitute", "delete")
                else (a.hyp_end_idx - a.hyp_start_idx) if a.type == "insert" else 0
                for a in alignment)
        errors.append(e)
        lengths.append(len(ref))
    return np.asarray(errors, np.float64), np.asarray(lengths, np.float64)


def bootstrap_ci(errors: np.ndarray, lengths: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus rate sum(errors)/sum(lengths), the
    utterances resampled with replacement."""
    n = errors.size
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    rates = errors[idx].sum(axis=1) / np.maximum(lengths[idx].sum(axis=1), 1.0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return (float(low), float(high))


def score(references: Sequence[str], hypotheses: Sequence[str]) -> Scores:
    """WER and CER over the whole set (not a mean of per-utterance rates), both texts
    normalised the same way (lowercase, ё -> е, no punctuation), each with its 95 %
    bootstrap interval over utterances.

    A reference that normalises to nothing is refused, never dropped: dropping it left its
    hypothesis uncounted (a wrong transcript scored WER 0). The manifest loader refuses
    such a line first, with its line number; this guards every other caller."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no reference to score")
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise EvaluationError(
            f"{len(empty)} reference(s) are empty once normalised for scoring, the first "
            f"(utterance {empty[0] + 1}) {references[empty[0]]!r}: a reference needs letters "
            "of the model's alphabet; fix the manifest's 'text'")
    word_e, word_n = _edits(refs, hyps, chars=False)
    char_e, char_n = _edits(refs, hyps, chars=True)
    return Scores(wer=float(jiwer.wer(refs, hyps)), cer=float(jiwer.cer(refs, hyps)),
                  wer_ci=bootstrap_ci(word_e, word_n), cer_ci=bootstrap_ci(char_e, char_n))


def latency_summary(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return {}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"latency_p50_ms": float(p50), "latency_p90_ms": float(p90),
            "latency_p99_ms": float(p99), "latency_mean_ms": float(values.mean())}


def repeat_spread(passes: Sequence[Sequence[float] | np.ndarray]) -> dict[str, float]:
    """Across repeated streaming passes: each latency statistic's min, max and spread
    (max - min), e.g. ``latency_p99_ms_min``; empty with fewer than two passes."""
    return summary_spread([latency_summary(p) for p in passes])


def summary_spread(summaries: Sequence[dict[str, float]]) -> dict[str, float]:
    """Across passes, each figure's ``_min``, ``_max`` and ``_spread`` (max - min): the
    interval promote reads for any objective but WER/CER. Only figures every pass has;
    empty with fewer than two passes that have any."""
    present = [s for s in summaries if s]
    if len(present) < 2:
        return {}
    out: dict[str, float] = {}
    for key in present[0]:
        if not all(key in s for s in present):
            continue
        values = [s[key] for s in present]
        out |= {f"{key}_min": min(values), f"{key}_max": max(values),
                f"{key}_spread": max(values) - min(values)}
    return out


def utterance_word_errors(references: Sequence[str], hypotheses: Sequence[str]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance, (word errors, reference words), normalised and aligned as ``score``
    does, so that their sums give its WER. A reference that normalises to nothing counts
    every hypothesis word as an error over no reference words (never dropped)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    errors = np.zeros(len(refs), np.float64)
    words = np.zeros(len(refs), np.float64)
    scored = [i for i, r in enumerate(refs) if r]
    if scored:
        e, n = _edits([refs[i] for i in scored], [hyps[i] for i in scored], chars=False)
        errors[scored], words[scored] = e, n
    for i, r in enumerate(refs):
        if not r:
            errors[i] = len(hyps[i].split())
    return errors, words


def paired_delta_ci(errors: np.ndarray, baseline_errors: np.ndarray, words: np.ndarray,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of WER(a) - WER(baseline) over the same utterances,
    resampled together (paired): the two systems' shared difficulty cancels, so the
    interval is that of the difference, far narrower than the two WER intervals side by
    side."""
    n = errors.size
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    total = np.maximum(words[idx].sum(axis=1), 1.0)
    deltas = (errors[idx].sum(axis=1) - baseline_errors[idx].sum(axis=1)) / total
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return (float(low), float(high))
