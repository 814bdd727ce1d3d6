"""How much each quantised group costs: a sensitivity score from streaming, cheap enough to
compute for every group before each full-set probe.

The score of a group is how far the model's per-frame output distribution moves back
towards fp32 when that group alone is reverted to float (``qdq.revert``): the mean over
frames of KL(fp32 || model), taken before and after the revert. It is computed by
streaming the mismatch subset (the utterances whose transcripts differ from fp32's, where
the damage shows) chunk by chunk with the state round-trip, so an error that a group feeds
into the recurrent state and that compounds over later chunks counts, as it does in the
transcripts. KL rather than WER: on a few dozen utterances WER moves in whole words and
ties almost every group at zero, while KL orders all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def frame_kl(reference: Sequence[np.ndarray], probe: Sequence[np.ndarray]) -> float:
    """Mean over frames of KL(reference || probe), both given as log-probabilities (they
    are renormalised, so logits or rounded log-probabilities work too)."""
    total = 0.0
    frames = 0
    for a, b in zip(reference, probe, strict=True):
        n = min(len(a), len(b))
        if n == 0:
            continue
        la, lb = _log_softmax(np.asarray(a[:n])), _log_softmax(np.asarray(b[:n]))
        total += float((np.exp(la) * (la - lb)).sum())
        frames += n
    return total / frames if frames else 0.0


def frame_flip_counts(reference: Sequence[np.ndarray], probe: Sequence[np.ndarray]
                      ) -> list[int]:
    """Per utterance: frames whose most likely class differs (a missing frame differs)."""
    out = []
    for a, b in zip(reference, probe, strict=True):
        n = min(len(a), len(b))
        out.append(int(np.count_nonzero(a[:n].argmax(-1) != b[:n].argmax(-1)))
                   + abs(len(a) - len(b)))
    return out


def mismatch_subset(reference_texts: Sequence[str], texts: Sequence[str],
                    flips: Sequence[int], limit: int) -> list[int]:
    """The ranking subset, at most ``limit`` utterances: those whose transcripts differ from
    fp32's (most frame disagreements first), topped up with the utterances whose frames
    disagree most. The top-up matters when few transcripts differ (or none, when a
    frame-level budget is what fails): a ranking on two utterances orders the groups by
    what those two happen to say."""
    order = sorted(range(len(texts)), key=lambda i: (-flips[i], i))
    differ = [i for i in order if texts[i] != reference_texts[i]]
    rest = [i for i in order if texts[i] == reference_texts[i] and flips[i] > 0]
    return sorted((differ + rest)[:limit])


@dataclass(frozen=True)
class Sensitivity:
    """One group's score in one ranking round."""

    group: str
    kl: float  # mean KL(fp32 || model with the group reverted) on the subset
    gain: float  # the current model's KL minus ``kl``: what reverting the group buys
    flips: int  # frames of the subset still disagreeing with fp32 after the revert
    rewired: int  # operands moved back to float (0: the group is not quantised here)


def order(scores: Sequence[Sensitivity]) -> list[Sensitivity]:
    """Worst first: the largest gain, ties broken by fewer remaining flips, then by name
    (a stable order, so a resumed search ranks as the first one did)."""
    return sorted(scores, key=lambda s: (-s.gain, s.flips, s.group))
