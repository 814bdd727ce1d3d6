"""Scores and timing figures of one evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from sweep.data.text import normalize


@dataclass(frozen=True)
class Scores:
    wer: float
    cer: float


def score(references: Sequence[str], hypotheses: Sequence[str]) -> Scores:
    """WER and CER over the whole set (not a mean of per-utterance rates), both texts
    normalised the same way (lowercase, ё -> е, no punctuation)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        raise ValueError("no non-empty reference to score")
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return Scores(wer=float(jiwer.wer(refs, hyps)), cer=float(jiwer.cer(refs, hyps)))


def latency_summary(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return {}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"latency_p50_ms": float(p50), "latency_p90_ms": float(p90),
            "latency_p99_ms": float(p99), "latency_mean_ms": float(values.mean())}
