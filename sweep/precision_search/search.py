"""The bisection: which nodes must stay FP32 for an fp16/bf16 flag set to keep its accuracy.

Probes are judged against the fp32 baseline (``budget.Budget``); ``Search`` drives
:func:`pinning.shrink` over op types, then nodes, and remembers every probe. (int8/fp8 are
searched by ranking instead: ``ranked.py``.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sweep import units
from sweep.engine import Engine
from sweep.errors import ConfigError, SweepError
from sweep.flags import FlagSet
from sweep.precision_search import pinning
from sweep.precision_search.budget import Budget

TARGETS = ("fp16", "bf16")
GRANULARITIES = ("auto", "op_type", "node")


class PrecisionSearchError(SweepError):
    """The search cannot answer: the budget is out of reach or the setup is unusable."""


@dataclass(frozen=True)
class Score:
    wer: float
    cer: float
    frame_flips: float  # fraction of frames whose argmax class differs from the baseline's
    build_seconds: float
    eval_seconds: float
    cached: bool


@dataclass
class Probe:
    n: int
    phase: str
    pinned: int  # nodes kept in fp32
    flags: FlagSet
    score: Score
    passed: bool
    run_id: str | None = None


@dataclass
class SearchResult:
    baseline: Score
    patterns: list[str]
    pinned_nodes: list[str]
    final: Probe
    probes: list[Probe] = field(default_factory=list)
    complete: bool = True  # False when --max-probes cut the search short


# -- evaluating one flag set ---------------------------------------------------------------

Transcribe = Callable[[Path, Engine], tuple[list[str], list[np.ndarray]]]
"""(engine path, engine) -> (hypotheses, per-utterance log-probabilities)."""


class Evaluator:
    """Builds a flag set with the emulator (engine cache) and scores it in-process."""

    def __init__(self, references: Sequence[str], transcribe: Transcribe,
                 build: Callable[[FlagSet], Engine]) -> None:
        self.references = list(references)
        self.transcribe = transcribe
        self.build = build

    def __call__(self, flags: FlagSet, reference_logprobs: list[np.ndarray] | None
                 ) -> tuple[Score, list[np.ndarray], Engine]:
        from sweep.evaluate.metrics import score

        engine = self.build(flags)
        t0 = time.perf_counter()
        hypotheses, logprobs = self.transcribe(engine.path, engine)
        seconds = time.perf_counter() - t0
        scores = score(self.references, hypotheses)
        flips = 0.0 if reference_logprobs is None else frame_flips(reference_logprobs, logprobs)
        return (Score(scores.wer, scores.cer, flips, engine.build_seconds, seconds,
                      engine.cached), logprobs, engine)


def frame_flips(reference: Sequence[np.ndarray], probe: Sequence[np.ndarray]) -> float:
    """Fraction of frames whose most likely class differs between two runs."""
    changed = total = 0
    for a, b in zip(reference, probe, strict=True):
        frames = min(len(a), len(b))
        changed += int(np.count_nonzero(a[:frames].argmax(-1) != b[:frames].argmax(-1)))
        changed += abs(len(a) - len(b))  # a frame one run has and the other lacks differs
        total += max(len(a), len(b))
    return changed / total if total else 0.0


# -- the search ----------------------------------------------------------------------------

class Search:
    """Drives :func:`pinning.shrink` with probes; remembers every probe it made."""

    def __init__(self, evaluate: Evaluator, base: FlagSet, target: str, criteria: Budget,
                 candidates: Sequence[pinning.Candidate], granularity: str = "auto",
                 max_probes: int = 200, max_seconds: float | None = None,
                 on_probe: Callable[[Probe, Engine], str | None] | None = None,
                 say: Callable[[str], None] = print) -> None:
        if target not in TARGETS:
            raise ConfigError(f"--target {target!r}: expected one of {', '.join(TARGETS)}.")
        if granularity not in GRANULARITIES:
            raise ConfigError(f"--granularity {granularity!r}: expected one of "
                              f"{', '.join(GRANULARITIES)}.")
        if base.strongly_typed and base.layer_precisions:
            raise ConfigError("a typed precision search starts from no FP32 keeps: it finds "
                              "them (drop trt.layer_precisions).")
        self.evaluate = evaluate
        self.target = target
        self.criteria = criteria
        self.candidates = list(candidates)
        self.granularity = granularity
        self.max_probes = max_probes
        self.max_seconds = max_seconds
        self._started = time.perf_counter()
        self.on_probe = on_probe
        self.say = say
        # The search owns the pins: a configured override list would hide what it finds.
        self.base = replace(base, precision=target, layer_precisions=(),
                            layer_output_types=())
        self.probes: list[Probe] = []
        self.complete = True
        self._memo: dict[frozenset[str], bool] = {}
        self._baseline: tuple[Score, list[np.ndarray]] | None = None
        self._phase = "start"

    def flags_for(self, pinned: Sequence[pinning.Candidate]) -> FlagSet:
        names = pinning.patterns(pinned, self.candidates)
        if not names:
            return self.base
        # Weakly typed: pins under obey. Strongly typed: the same names as AutoCast's
        # exclusions (FP32 keeps), no constraints (TensorRT 11 has none).
        flags = replace(self.base,
                        precision_constraints="none" if self.base.strongly_typed else "obey",
                        layer_precisions=tuple((p, "fp32") for p in names))
        flags.validate()
        return flags

    def _record(self, flags: FlagSet, pinned: int, score: Score, passed: bool,
                engine: Engine) -> Probe:
        probe = Probe(len(self.probes) + 1, self._phase, pinned, flags, score, passed)
        self.probes.append(probe)
        if self.on_probe is not None:
            probe.run_id = self.on_probe(probe, engine)
        self.say(f"probe {probe.n:>3} [{probe.phase}] {pinned:>4} pinned: WER {score.wer:.4f} "
                 f"CER {score.cer:.4f} flips {score.frame_flips:.5f} -> "
                 f"{'pass' if passed else 'FAIL'}"
                 f"{' (cached engine)' if score.cached else ''}")
        return probe

    def baseline(self) -> Score:
        if self._baseline is None:
            self._phase = "baseline"
            flags = replace(self.base, precision="fp32", precision_constraints="none",
                            strongly_typed=False)
            score, logprobs, engine = self.evaluate(flags, None)
            self._baseline = (score, logprobs)
            self._record(flags, 0, score, True, engine)
        return self._baseline[0]

    def passes(self, pinned: Sequence[pinning.Candidate]) -> bool:
        key = frozenset(c.name for c in pinned)
        if key in self._memo:
            return self._memo[key]
        if len(self.probes) >= self.max_probes or (
                self.max_seconds is not None
                and time.perf_counter() - self._started >= self.max_seconds):
            # Out of probes or time: keep what is pinned (it passed), report it as partial.
            self.complete = False
            return False
        baseline = self.baseline()
        assert self._baseline is not None
        flags = self.flags_for(pinned)
        score, _, engine = self.evaluate(flags, self._baseline[1])
        passed = self.criteria.passes(score.wer, score.frame_flips, baseline.wer)
        self._memo[key] = passed
        self._record(flags, len(pinned), score, passed, engine)
        return passed

    def run(self) -> SearchResult:
        baseline = self.baseline()
        self._phase = "none pinned"
        if self.passes([]):
            return self._result(baseline, [])
        self._phase = "all pinned"
        if not self.passes(self.candidates):
            raise PrecisionSearchError(
                f"even with all {len(self.candidates)} candidate nodes in FP32 the probe fails "
                f"({self.criteria.describe(baseline.wer)}; fp32 WER "
                f"{units.percent(baseline.wer)}). The budget is tighter than the evaluation's "
                "own noise: raise --max-wer-delta (or --max-wer, --max-wer-rel) or "
                "--max-frame-flips.")
        kept = list(self.candidates)
        if self.granularity in ("auto", "op_type"):
            self._phase = "op types"
            types = list(dict.fromkeys(c.op_type for c in self.candidates))
            kept_types = set(pinning.shrink(
                types, lambda ts: self.passes([c for c in self.candidates if c.op_type in ts])))
            kept = [c for c in self.candidates if c.op_type in kept_types]
        if self.granularity in ("auto", "node"):
            self._phase = "nodes"
            kept = pinning.shrink(kept, self.passes)
        return self._result(baseline, kept)

    def _result(self, baseline: Score, kept: list[pinning.Candidate]) -> SearchResult:
        # The last probe checks exactly the flag set that will be written: its patterns
        # (op types) may pin more nodes than the node list did (shape/weight nodes, which
        # change nothing), so it must pass too.
        self._phase = "final"
        flags = self.flags_for(kept)
        assert self._baseline is not None
        score, _, engine = self.evaluate(flags, self._baseline[1])
        passed = self.criteria.passes(score.wer, score.frame_flips, baseline.wer)
        final = self._record(flags, len(kept), score, passed, engine)
        if not passed:
            raise PrecisionSearchError(
                f"the final flag set {flags.label} ({flags.digest}) failed its check "
                f"(WER {score.wer:.4f}, flips {score.frame_flips:.5f}): the evaluation is "
                "not deterministic here. Use builder.intra_op_threads=1 and rerun.")
        return SearchResult(baseline, [p for p, _ in flags.layer_precisions],
                            [c.name for c in kept], final, self.probes, self.complete)
