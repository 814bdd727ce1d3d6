"""How far one chunk-by-chunk run is from another: features, log-probs, transcripts.

Runs are aligned on time, not on chunk index, so a 300 ms deployment can be compared with
a 400 ms reference: both emit one feature frame per 10 ms and one output frame per 20 ms,
counted from the start of the padded stream. Differences are summarised per chunk of the
second run (the reference), which is what the divergence plot shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep.data.text import normalize
from sweep.errors import DoctorError
from sweep.evaluate.reference import UtteranceTrace


@dataclass(frozen=True)
class ChunkDiff:
    utterance_id: str
    index: int
    start_s: float  # in the padded stream
    frames: int
    logprob_max_abs: float
    logprob_mean_abs: float
    kl: float  # mean over frames of KL(a || b), nats
    argmax_agreement: float
    feature_max_abs: float | None = None
    feature_mean_abs: float | None = None


@dataclass
class Comparison:
    """Run ``a`` (served) against run ``b`` (a reference run) over the same utterances."""

    chunks: list[ChunkDiff]
    frames: int
    kl: float
    logprob_max_abs: float
    logprob_mean_abs: float
    argmax_agreement: float
    feature_max_abs: float | None
    feature_mean_abs: float | None
    frame_count_mismatch: list[str] = field(default_factory=list)


def _kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame KL(a || b) of two log-probability matrices."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    # Guard -inf (a class with probability exactly 0): it contributes nothing to KL(a||b).
    p = np.exp(a64)
    diff = np.where(p > 0, a64 - b64, 0.0)
    return np.maximum((p * diff).sum(axis=-1), 0.0)


def compare_utterance(a: UtteranceTrace, b: UtteranceTrace) -> tuple[list[ChunkDiff], int]:
    """Per-chunk differences (chunks of ``b``); also the frame-count difference."""
    la, lb = a.all_logprobs(), b.all_logprobs()
    if la.ndim != 2 or lb.ndim != 2 or la.shape[-1] != lb.shape[-1]:
        raise DoctorError(f"utterance {b.utterance.id!r}: log-probs of shape {la.shape} and "
                          f"{lb.shape} cannot be compared (different alphabets?).")
    rate_a = a.logprobs[0].shape[0] / a.chunk_seconds
    rate_b = b.logprobs[0].shape[0] / b.chunk_seconds
    if abs(rate_a - rate_b) > 1e-6:
        raise DoctorError(f"utterance {b.utterance.id!r}: {rate_a:g} and {rate_b:g} output "
                          "frames per second; the two models do not share a frame rate.")
    frames = min(len(la), len(lb))
    la, lb = la[:frames], lb[:frames]
    delta = np.abs(la.astype(np.float64) - lb.astype(np.float64))
    kl = _kl(la, lb)
    agree = la.argmax(-1) == lb.argmax(-1)
    fa, fb = a.all_features(), b.all_features()
    fdelta = None
    per_feature_chunk = 0
    if fa is not None and fb is not None and b.features:
        t = min(fa.shape[-1], fb.shape[-1])
        fdelta = np.abs(fa[:, :t].astype(np.float64) - fb[:, :t].astype(np.float64))
        per_feature_chunk = b.features[0].shape[-1]
    per_chunk = b.logprobs[0].shape[0]
    out = []
    for i in range(b.chunks):
        s = slice(i * per_chunk, min((i + 1) * per_chunk, frames))
        if s.start >= frames:
            break
        fmax = fmean = None
        if fdelta is not None:
            fs = fdelta[:, i * per_feature_chunk:(i + 1) * per_feature_chunk]
            if fs.size:
                fmax, fmean = float(fs.max()), float(fs.mean())
        out.append(ChunkDiff(b.utterance.id, i, i * b.chunk_seconds, s.stop - s.start,
                             float(delta[s].max()), float(delta[s].mean()),
                             float(kl[s].mean()), float(agree[s].mean()), fmax, fmean))
    return out, len(a.all_logprobs()) - len(b.all_logprobs())


def compare(a: Sequence[UtteranceTrace], b: Sequence[UtteranceTrace]) -> Comparison:
    chunks: list[ChunkDiff] = []
    mismatch = []
    for ta, tb in zip(a, b, strict=True):
        diffs, extra = compare_utterance(ta, tb)
        chunks += diffs
        if extra:
            mismatch.append(f"{tb.utterance.id}: {extra:+d} frames")
    if not chunks:
        raise DoctorError("nothing to compare: no chunk was streamed.")
    weights = np.array([c.frames for c in chunks], np.float64)
    total = float(weights.sum())

    def mean(values: list[float]) -> float:
        return float(np.dot(np.array(values, np.float64), weights) / total)

    feats = [c for c in chunks if c.feature_max_abs is not None]
    return Comparison(
        chunks=chunks, frames=int(total),
        kl=mean([c.kl for c in chunks]),
        logprob_max_abs=max(c.logprob_max_abs for c in chunks),
        logprob_mean_abs=mean([c.logprob_mean_abs for c in chunks]),
        argmax_agreement=mean([c.argmax_agreement for c in chunks]),
        feature_max_abs=max(c.feature_max_abs or 0.0 for c in feats) if feats else None,
        feature_mean_abs=(float(np.mean([c.feature_mean_abs or 0.0 for c in feats]))
                          if feats else None),
        frame_count_mismatch=mismatch)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, words in the reference) after the scoring normalisation."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def transcript_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER that tolerates empty references (a transcript may be empty); with no
    reference word at all, any hypothesis word counts as one error per word."""
    errors = words = 0
    for r, h in zip(references, hypotheses, strict=True):
        e, n = word_errors(r, h)
        errors, words = errors + e, words + n
    return errors / words if words else float(errors)


def differing(a: Sequence[str], b: Sequence[str]) -> int:
    return sum(normalize(x) != normalize(y) for x, y in zip(a, b, strict=True))
