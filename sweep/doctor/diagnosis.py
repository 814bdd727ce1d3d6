"""Served pipeline vs reference: measure the gap, then find which known cause explains it.

The search is one cause at a time (every cause's reference run is compared with the
served output), then greedy stacking: the cause that removes the most divergence is kept
and the others are tried on top of it, for deployments with more than one mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from sweep.data.manifest import Utterance, read_audio
from sweep.doctor.causes import NONE, Cause, ReferenceRunner, known_causes
from sweep.doctor.compare import Comparison, compare, differing, transcript_wer
from sweep.errors import DoctorError
from sweep.evaluate.decode import DecodePool, DecoderSpec
from sweep.evaluate.metrics import score
from sweep.evaluate.reference import UtteranceTrace
from sweep.evaluate.variant import ClientVariant
from sweep.model import ModelInterface

# Below this mean KL (nats per frame) two runs are the same computation up to float
# reordering; a cause must also remove at least half of what is left to be named.
KL_FLOOR = 1e-9
ACCEPT_RATIO = 0.5
# What float32 front ends legitimately differ by (DALI vs numpy features: ~4e-9): a
# residual below it, with every label and transcript agreeing, is arithmetic, not a cause.
NOISE_KL = 1e-8


class Target(Protocol):
    """What the doctor streams against (a Triton endpoint, or an in-process stand-in)."""

    model: ModelInterface  # the reference interface at the served chunk duration
    variant: ClientVariant

    def describe(self) -> str: ...

    def trace(self, utterance: Utterance, samples: np.ndarray) -> UtteranceTrace: ...


@dataclass
class RunSummary:
    """One reference run (a cause injected, or none) measured against the served run."""

    cause: Cause
    comparison: Comparison
    transcripts: list[str]
    wer_truth: float
    transcript_wer: float  # served transcripts scored against this run's
    differing: int  # utterances whose transcripts differ from the served ones
    traces: list[UtteranceTrace] = field(repr=False, default_factory=list)


@dataclass
class Diagnosis:
    target: str
    reference: ModelInterface
    served_chunk_ms: int
    client: ClientVariant
    decoder: DecoderSpec
    utterances: list[Utterance]
    short_utterances: list[str]
    served: list[UtteranceTrace]
    served_transcripts: list[str]
    served_wer_truth: float
    baseline: RunSummary
    tried: list[RunSummary]
    chain: list[RunSummary]  # accepted causes, stacked; the last holds all of them
    not_applicable: dict[str, str]
    notes: list[str]

    @property
    def best(self) -> RunSummary | None:
        return self.chain[-1] if self.chain else None

    def explained(self, run: RunSummary) -> float:
        """Share of the served-vs-reference divergence (mean KL) that ``run`` removes."""
        base = self.baseline.comparison.kl
        if base <= KL_FLOOR:
            return 0.0
        return float(np.clip(1.0 - run.comparison.kl / base, 0.0, 1.0))

    def wer_gap_explained(self, run: RunSummary) -> float | None:
        """How much of the served-vs-reference WER gap ``run`` closes: 1 when its WER is the
        served WER, 0 when it is no closer than the reference's (or farther). None when the
        gap is under 0.1 points, where one word flips it."""
        gap = abs(self.served_wer_truth - self.baseline.wer_truth)
        if gap < 1e-3:
            return None
        return float(np.clip(1.0 - abs(self.served_wer_truth - run.wer_truth) / gap, 0.0, 1.0))

    @property
    def matches(self) -> bool:
        b = self.baseline
        return b.comparison.kl <= KL_FLOOR or (
            b.differing == 0 and b.comparison.argmax_agreement >= 0.999 and not self.chain)

    @property
    def verdict(self) -> str:
        if self.chain:
            best = self.chain[-1]
            residual = best.comparison.kl
            if residual <= max(KL_FLOOR, 0.05 * self.baseline.comparison.kl) or (
                    residual <= NOISE_KL and best.differing == 0
                    and best.comparison.argmax_agreement >= 0.999):
                return "explained"
            return "partly explained"
        if self.served_chunk_ms != self.reference.chunk_ms:
            return "chunk duration (not quantified)"
        return "match" if self.matches else "unexplained"


class _Decoding:
    """Decodes many runs through one pool (its workers load the LM once)."""

    def __init__(self, pool: DecodePool) -> None:
        self.pool = pool
        self.runs = 0

    def __call__(self, traces: Sequence[UtteranceTrace]) -> list[str]:
        self.runs += 1
        keys = [f"{self.runs}/{t.utterance.id}" for t in traces]
        for key, t in zip(keys, traces, strict=True):
            self.pool.submit(key, t.all_logprobs())
        texts = self.pool.results()
        return [texts[k] for k in keys]


def _summary(cause: Cause, served: list[UtteranceTrace], served_texts: list[str],
             traces: list[UtteranceTrace], decode: Callable[[Sequence[UtteranceTrace]],
                                                             list[str]]) -> RunSummary:
    texts = decode(traces)
    truth = [t.utterance.text for t in traces]
    return RunSummary(cause, compare(served, traces), texts, score(truth, texts).wer,
                      transcript_wer(texts, served_texts), differing(texts, served_texts),
                      traces)


def diagnose(target: Target, reference: ModelInterface, utterances: list[Utterance], *,
             decoder: DecoderSpec | None = None, decode_workers: int = 0,
             alt_exports: Mapping[int, Path | str] | None = None,
             reference_fp16: bool = False,
             runner: ReferenceRunner | None = None,
             log: Callable[[str], None] = lambda _: None) -> Diagnosis:
    """Stream ``utterances`` through ``target`` and the reference; find the cause.

    ``alt_exports`` maps a chunk duration (ms) to an export of the reference checkpoint at
    that duration; each one is tried as the chunk-duration cause.
    """
    if not utterances:
        raise DoctorError("no utterances to compare; check --dataset and --limit.")
    decoder = decoder or DecoderSpec()
    longest_chunk = max(target.model.chunk_samples, reference.chunk_samples)
    audio: dict[str, np.ndarray] = {}
    kept, short = [], []
    for u in utterances:
        samples = read_audio(u.audio_path, expected_rate=reference.sample_rate)
        if samples.size < longest_chunk:
            short.append(f"{u.id} ({samples.size / reference.sample_rate * 1000:.0f} ms)")
            continue
        audio[u.id] = samples
        kept.append(u)
    if not kept:
        raise DoctorError(
            f"all {len(utterances)} utterances are shorter than one chunk "
            f"({longest_chunk / reference.sample_rate * 1000:.0f} ms): "
            f"{', '.join(short[:5])}. A chunk-by-chunk comparison needs at least one whole "
            "chunk of speech; pick longer utterances.")
    if short:
        log(f"skipping {len(short)} utterance(s) shorter than one chunk: {', '.join(short)}")

    notes: list[str] = list(getattr(target, "notes", []))
    if target.model.chunk_ms != reference.chunk_ms:
        notes.append(
            f"The served model takes {target.model.chunk_ms} ms chunks, the reference export "
            f"{reference.chunk_ms} ms (read from the served model's input shape): chunk "
            "duration differs whatever else does. Runs are compared on the time axis.")
    runner = runner or ReferenceRunner(reference, reference_fp16=reference_fp16)
    exports = {int(k): Path(v) for k, v in (alt_exports or {}).items()}
    causes, not_applicable = known_causes(reference, reference_fp16=reference_fp16,
                                          alt_exports=exports)
    if target.model.chunk_ms != reference.chunk_ms and target.model.chunk_ms not in exports:
        notes.append(f"Pass --alt-onnx {target.model.chunk_ms}=PATH (the reference checkpoint "
                     f"exported with --chunk-ms {target.model.chunk_ms}) to measure how much "
                     "of the gap the chunk duration explains.")

    with DecodePool(decoder, decode_workers) as pool:
        decode = _Decoding(pool)
        log(f"streaming {len(kept)} utterance(s) through {target.describe()}")
        served = [target.trace(u, audio[u.id]) for u in kept]
        served_texts = decode(served)
        truth = [u.text for u in kept]
        log("reference run")
        baseline = _summary(NONE, served, served_texts, runner.run(NONE, kept, audio), decode)
        tried = []
        for cause in causes:
            log(f"reference with {cause.title}: {cause.change}")
            tried.append(_summary(cause, served, served_texts, runner.run(cause, kept, audio),
                                  decode))
        chain = _stack(baseline, tried, causes, served, served_texts, runner, kept, audio,
                       decode, log)
    return Diagnosis(target.describe(), reference, target.model.chunk_ms, target.variant,
                     decoder, kept, short, served, served_texts,
                     score(truth, served_texts).wer, baseline, tried, chain, not_applicable,
                     notes)


def _accepts(current: RunSummary, candidate: RunSummary) -> bool:
    return (current.comparison.kl > KL_FLOOR
            and candidate.comparison.kl <= ACCEPT_RATIO * current.comparison.kl)


def _stack(baseline: RunSummary, tried: list[RunSummary], causes: list[Cause],
           served: list[UtteranceTrace], served_texts: list[str], runner: ReferenceRunner,
           utterances: list[Utterance], audio: dict[str, np.ndarray],
           decode: Callable[[Sequence[UtteranceTrace]], list[str]],
           log: Callable[[str], None]) -> list[RunSummary]:
    def rank(run: RunSummary) -> tuple[float, float]:
        return (run.comparison.kl, run.transcript_wer)

    chain: list[RunSummary] = []
    current, candidates = baseline, sorted(tried, key=rank)
    while candidates and _accepts(current, candidates[0]):
        chain.append(candidates[0])
        current = candidates[0]
        used = current.cause.keys
        rest = [c for c in causes if c.key not in used]
        if not rest or current.comparison.kl <= KL_FLOOR:
            break
        candidates = []
        for cause in rest:
            combined = current.cause.combine(cause)
            log(f"reference with {combined.title}")
            candidates.append(_summary(combined, served, served_texts,
                                       runner.run(combined, utterances, audio), decode))
        candidates.sort(key=rank)
    return chain
