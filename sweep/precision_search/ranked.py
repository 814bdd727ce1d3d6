"""The ranked fallback search for int8/fp8: quantise everything, then put back in float the
groups that cost the most, one confirmed step at a time.

The loop (OpenVINO's accuracy-aware quantisation, NNCF's ``quantize_with_accuracy_control``,
Intel Neural Compressor's fallback strategies all follow it):

1. fp32 on the full test set: the reference transcripts, log-probabilities and WER.
2. Plain int8/fp8 (nothing kept in float) on the full set. Within budget: done.
3. Rank the quantised groups on the mismatch subset (``ranking.py``): each group reverted
   alone in the current model, scored by how much closer to fp32 the outputs get.
4. Revert the top group that was neither kept nor rejected: realise the flag set for real
   (ModelOpt with the group excluded) and probe the full test set, the same evaluation
   as every probe. Within budget: done. Better than the current model (lower WER, or equal
   WER and fewer frame flips): kept, and the walk goes on down the ranking. Not better:
   undone and rejected, and if the ranking is older than the current model, re-ranked.
5. Stops at the budget, ``max_probes`` full-set probes, ``max_seconds`` of recorded work
   (over every session of a resumed search), or when no group is left.

Every evaluation goes through :class:`~sweep.precision_search.history.History` first, so a
search that was interrupted replays what it had done and goes on from there.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sweep import units
from sweep.precision_search import ranking
from sweep.precision_search.budget import Budget
from sweep.precision_search.history import History
from sweep.precision_search.qdq import Group
from sweep.precision_search.search import PrecisionSearchError


@dataclass(frozen=True)
class FullEval:
    """One flag set on the whole test set, against fp32."""

    wer: float
    cer: float
    frame_flips: float  # fraction of frames whose most likely class differs from fp32's
    kl: float  # mean per-frame KL(fp32 || this)
    hypotheses: list[str]
    flip_counts: list[int]  # per utterance
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FullEval:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SubsetEval:
    """One model variant on the ranking subset."""

    kl: float
    flips: int
    rewired: int
    seconds: float


class Probes(Protocol):
    """What the search asks of the outside world (builds, streaming)."""

    def baseline(self) -> FullEval: ...

    def full(self, keeps: tuple[str, ...]) -> FullEval: ...

    def subset(self, keeps: tuple[str, ...], revert: tuple[str, ...],
               subset: Sequence[int]) -> SubsetEval: ...


@dataclass
class Step:
    """A full-set probe."""

    n: int
    phase: str  # baseline | plain | revert
    keeps: tuple[str, ...]  # node names kept in float
    result: FullEval
    passed: bool
    group: str | None = None
    gain: float | None = None  # the group's ranking score
    ranking_round: int | None = None
    accepted: bool = False
    replayed: bool = False
    run_id: str | None = None


@dataclass
class Round:
    """One ranking: every remaining group scored on the mismatch subset."""

    n: int
    keeps: tuple[str, ...]
    subset: list[int]
    base_kl: float
    scores: list[ranking.Sensitivity]
    replayed: bool = False
    run_id: str | None = None


@dataclass
class RankedResult:
    baseline: FullEval
    final: Step
    steps: list[Step] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def keeps(self) -> tuple[str, ...]:
        return self.final.keeps

    @property
    def probes(self) -> int:
        return len(self.steps)


def _key(kind: str, *parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True)
    return f"{kind}:{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


class StopSearch(PrecisionSearchError):
    """A budget of probes or time ran out before the WER budget was met."""


class RankedSearch:
    def __init__(self, probes: Probes, groups: Sequence[Group], budget: Budget,
                 history: History, *, max_probes: int = 50,
                 max_seconds: float | None = None, subset_limit: int = 32,
                 on_step: Callable[[Step], str | None] | None = None,
                 on_round: Callable[[Round], str | None] | None = None,
                 say: Callable[[str], None] = print) -> None:
        if not groups:
            raise PrecisionSearchError(
                "the quantised model has no quantised node to keep in float (no Conv, Gemm "
                "or MatMul reads a DequantizeLinear): nothing to search.")
        self.probes = probes
        self.groups = list(groups)
        self.budget = budget
        self.history = history
        self.max_probes = max_probes
        self.max_seconds = max_seconds
        self.subset_limit = subset_limit
        self.on_step = on_step
        self.on_round = on_round
        self.say = say
        self.steps: list[Step] = []
        self.rounds: list[Round] = []
        self._baseline: FullEval | None = None

    # -- evaluations, through the history ---------------------------------------------

    def _spent(self) -> float:
        return self.history.seconds()

    def _out_of_time(self) -> str | None:
        if self.max_seconds is not None and self._spent() >= self.max_seconds:
            return (f"--max-minutes {self.max_seconds / 60:g} reached "
                    f"({self._spent() / 60:.1f} min of evaluations recorded)")
        return None

    def _out_of_budget(self) -> str | None:
        if len(self.steps) >= self.max_probes:
            return f"--max-probes {self.max_probes} reached"
        return self._out_of_time()

    def _full(self, key: str, make: Callable[[], FullEval]) -> tuple[FullEval, bool]:
        stored = self.history.get(key)
        if stored is not None:
            return FullEval.from_dict(stored), True
        result = make()
        self.history.put(key, result.as_dict())
        return result, False

    def _step(self, phase: str, keeps: tuple[str, ...], group: Group | None = None,
              gain: float | None = None, round_no: int | None = None) -> Step:
        key = "baseline" if phase == "baseline" else _key("full", sorted(keeps))
        if phase == "baseline":
            result, replayed = self._full(key, self.probes.baseline)
        else:
            result, replayed = self._full(key, lambda: self.probes.full(keeps))
        baseline_wer = result.wer if self._baseline is None else self._baseline.wer
        passed = self.budget.passes(result.wer, result.frame_flips, baseline_wer)
        step = Step(len(self.steps) + 1, phase, keeps, result, passed,
                    group.name if group else None, gain, round_no, replayed=replayed)
        self.steps.append(step)
        step.run_id = self.history.runs.get(key)
        if step.run_id is None and self.on_step is not None:
            step.run_id = self.on_step(step)
            if step.run_id:
                self.history.set_run(key, step.run_id)
        what = f"revert {group.name}" if group else phase
        self.say(f"probe {step.n:>3} [{what}] {len(keeps):>3} kept in float: WER "
                 f"{units.percent(result.wer)} flips {result.frame_flips:.5f} KL "
                 f"{result.kl:.4f} -> {'within budget' if passed else 'over budget'}"
                 f"{' (replayed)' if replayed else ''}")
        return step

    def _subset(self, keeps: tuple[str, ...], revert: tuple[str, ...],
                subset: Sequence[int]) -> tuple[SubsetEval, bool]:
        key = _key("subset", sorted(keeps), sorted(revert), list(subset))
        stored = self.history.get(key)
        if stored is not None:
            return SubsetEval(**stored), True
        result = self.probes.subset(keeps, revert, subset)
        self.history.put(key, asdict(result))
        return result, False

    def _rank(self, current: Step, rejected: set[str]) -> Round | str:
        """Score every group not kept and not rejected; why not, when time ran out."""
        assert self._baseline is not None
        subset = ranking.mismatch_subset(self._baseline.hypotheses, current.result.hypotheses,
                                         current.result.flip_counts, self.subset_limit)
        if not subset:  # nothing differs from fp32 at all, yet the budget fails: nothing to rank on
            subset = list(range(min(self.subset_limit, len(current.result.hypotheses))))
        kept = set(current.keeps)
        todo = [g for g in self.groups if g.name not in rejected
                and not set(g.nodes) <= kept]
        base, replayed = self._subset(current.keeps, (), subset)
        scores = []
        t0 = time.perf_counter()
        for g in todo:
            if (why := self._out_of_time()) is not None:
                return why + " during a ranking"
            s, was = self._subset(current.keeps, g.nodes, subset)
            replayed = replayed and was
            scores.append(ranking.Sensitivity(g.name, s.kl, base.kl - s.kl, s.flips,
                                              s.rewired))
        # A group none of whose nodes is quantised in this model cannot help.
        ordered = ranking.order([s for s in scores if s.rewired > 0])
        rnd = Round(len(self.rounds) + 1, current.keeps, subset, base.kl, ordered, replayed)
        self.rounds.append(rnd)
        key = _key("round", sorted(current.keeps), subset)
        rnd.run_id = self.history.runs.get(key)
        if rnd.run_id is None and self.on_round is not None:
            rnd.run_id = self.on_round(rnd)
            if rnd.run_id:
                self.history.set_run(key, rnd.run_id)
        top = ", ".join(f"{s.group} {s.gain:+.4f}" for s in ordered[:3])
        self.say(f"ranking {rnd.n}: {len(ordered)} groups on {len(subset)} mismatched "
                 f"utterances (KL {base.kl:.4f}), {time.perf_counter() - t0:.0f} s"
                 f"{' (replayed)' if replayed else ''}; worst: {top}")
        return rnd

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> RankedResult:
        baseline = self._step("baseline", ())
        self._baseline = baseline.result
        current = self._step("plain", ())
        current.accepted = True
        rejected: set[str] = set()
        rnd: Round | None = None
        while not current.passed:
            if (why := self._out_of_budget()) is not None:
                raise self._stopped(why, current)
            if rnd is None:
                ranked = self._rank(current, rejected)
                if isinstance(ranked, str):
                    raise self._stopped(ranked, current)
                rnd = ranked
            by_name = {g.name: g for g in self.groups}
            kept = set(current.keeps)
            nxt = next((s for s in rnd.scores if s.group not in rejected
                        and not set(by_name[s.group].nodes) <= kept), None)
            if nxt is None:
                if rnd.keeps != current.keeps:  # stale: rank the current model
                    rnd = None
                    continue
                raise self._stopped("every group was tried", current, exhausted=True)
            group = by_name[nxt.group]
            keeps = tuple(n for g in self.groups for n in g.nodes
                          if n in kept or n in group.nodes)
            step = self._step("revert", keeps, group, nxt.gain, rnd.n)
            if step.passed or self._better(step.result, current.result):
                step.accepted = True
                current = step
            else:
                rejected.add(group.name)
                if rnd.keeps != current.keeps:
                    rnd = None  # the ranking was made for an older model: rank again
        return RankedResult(baseline.result, current, self.steps, self.rounds, self._spent())

    @staticmethod
    def _better(a: FullEval, b: FullEval) -> bool:
        """Fewer errors, or as many with fewer frames off fp32's decision."""
        if a.wer < b.wer - 1e-12:
            return True
        return abs(a.wer - b.wer) <= 1e-12 and a.frame_flips < b.frame_flips

    def _stopped(self, why: str, current: Step, exhausted: bool = False) -> StopSearch:
        assert self._baseline is not None
        base = self._baseline.wer
        hint = ("Even with every group that helped kept in float the budget is not met: "
                "loosen the budget (or check that fp32 itself meets it)." if exhausted else
                "The record is kept: run the same command with a larger --max-probes or "
                "--max-minutes to go on from here.")
        return StopSearch(
            f"stopped before the budget was met ({why}). Best so far: {len(current.keeps)} "
            f"nodes kept in float, WER {units.percent(current.result.wer)} "
            f"(fp32 {units.percent(base)}, budget {self.budget.describe(base)}), frame flips "
            f"{current.result.frame_flips:.5f}, after {len(self.steps)} probes. {hint} "
            "No preset was written.")
