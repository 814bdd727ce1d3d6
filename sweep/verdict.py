"""The one verdict of a sweep: which engine to ship and why, with its uncertainty.

Pure data in, data out: fed typed :class:`~sweep.tracking.records.JobRecord`s (and, where
the jobs logged transcripts, their per-utterance word errors), it returns a
:class:`Verdict`. The console table, the CSV, the Pareto plot, the parent run's
description (``sweep/tracking/summary.py``) and ``python -m sweep.promote`` all print this
verdict; nothing else decides. The rules (docs/promote.md):

* **Rows it cannot judge**, each with why: a job that did not FINISH, a dry run, a job
  measured on another device or builder version than the target, one measured in another
  sweep (a copy across sweeps: judged only when the sweep allowed reuse,
  ``tracking.reuse_across_sweeps=true``, and then marked everywhere).
* **The fp32 reference**: a judged job with ``precision=fp32`` and no per-layer
  overrides; weakly typed preferred, else strongly typed (TensorRT 11 builds nothing
  else); several: the lowest WER (the strictest budget), ties to the earlier job.
* **ΔWER** of each job against it, in percentage points, with the 95 % *paired*
  bootstrap interval over the same utterances (both jobs' errors resampled together);
  WER itself with its own bootstrap interval. A latency's interval is its range over the
  ``eval.repeats`` passes (``<metric>_min``/``_max``); one pass: a point.
* **The front**, judged with the intervals: a job is dominated only where another is
  better *beyond the noise* on one axis (objective or WER) and not worse beyond the noise
  on the other. WER is compared by the paired interval of the two jobs' difference where
  both logged transcripts, else by their intervals' overlap.
* **The recommendation**: among judged jobs within the constraints (ΔWER budget in points
  or an absolute WER in percent, an engine logged, capacity), the best by the objective
  wins when its interval clears every other qualifier's (an engine whose realised precision
  is not its label's, tag ``precision_mismatch``, qualifies only when forced); otherwise
  the simplest flag set
  of those it cannot be told apart from (fewer layer pins, then the smaller precision
  change fp32 < bf16 = fp16 < fp8 < int8, then weaker precision constraints, then the
  lower opt level). Exact ties: lower WER, earlier job, smaller run id.
* Runs of different datasets or model interfaces are never compared (:func:`comparable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep import units
from sweep.errors import PromoteError
from sweep.tracking import tags as tag
from sweep.tracking.records import JobRecord, UtteranceErrors

# "reference + 0.5 points" must not reject a candidate at exactly that WER because
# 0.12 + 0.005 is not representable exactly.
_EPSILON = 1e-9
PERCENT_METRICS = ("wer", "cer")


@dataclass(frozen=True)
class Objective:
    metric: str = "latency_p99_ms"
    maximize: bool = False

    @classmethod
    def parse(cls, text: str) -> Objective:
        """``metric`` or ``metric:min`` (lowest wins) / ``metric:max`` (highest wins)."""
        name, _, direction = text.partition(":")
        if not name or direction not in ("", "min", "max"):
            raise PromoteError(
                f"--objective {text!r}: expected METRIC, METRIC:min or METRIC:max, e.g. "
                "latency_p99_ms or throughput_chunks_s:max.")
        return cls(name, direction == "max")

    def describe(self) -> str:
        return f"{'highest' if self.maximize else 'lowest'} {self.metric}"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b


@dataclass(frozen=True)
class Constraints:
    """What a job must satisfy: WER within ``max_wer_delta`` percentage points of the fp32
    reference, or under ``max_wer`` percent absolute."""

    max_wer_delta: float = 0.5
    max_wer: float | None = None
    device: str | None = None
    builder_version: str | None = None
    # Calls the engine serves within the latency SLO (eval.capacity=true's streams_at_slo).
    min_streams_at_slo: int | None = None
    # GPU memory the server held while serving the engine (gpu_memory_used_bytes, GPU hosts).
    max_gpu_memory_mib: float | None = None
    # Installing needs the engine file; a verdict on figures alone does not.
    require_engine: bool = True
    # A job copied from another sweep is judged (and marked) only where the sweep said so.
    allow_reused: bool = False
    # An engine that does not run its label's precision (tag precision_mismatch) qualifies
    # only when forced (promote --allow-precision-mismatch).
    allow_mismatch: bool = False


@dataclass(frozen=True)
class Target:
    """The resolved constraints: a WER bound (fraction) and the production device/builder."""

    wer_budget: float
    budget_reason: str
    device: str
    builder_version: str
    target_reason: str
    reference: JobRecord | None
    min_streams_at_slo: int | None = None


@dataclass(frozen=True)
class Row:
    """One job under the verdict."""

    record: JobRecord
    # Why it cannot be judged (judged False), or which constraints it breaks (judged True);
    # empty: it qualifies.
    reasons: tuple[str, ...] = ()
    judged: bool = True
    rank: int | None = None  # 1 = recommended
    on_front: bool = False
    # Against the fp32 reference, as fractions (shown in points).
    delta_wer: float | None = None
    delta_ci: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.judged and not self.reasons

    @property
    def reused(self) -> bool:
        """Measured in another sweep (marked wherever the row is shown)."""
        m = self.record.measured
        return m is not None and not m.same_sweep

    def status_word(self) -> str:
        if self.rank == 1:
            return "recommended"
        if not self.judged:
            return "not judged"
        if self.reasons:
            return "rejected"
        return "qualifies"


@dataclass(frozen=True)
class Verdict:
    objective: Objective
    target: Target | None
    rows: tuple[Row, ...]  # recommended first, then qualifiers, rejects, the unjudged
    indistinguishable: tuple[JobRecord, ...] = ()
    decision: str = ""  # how the recommendation was decided (the intervals' comparison)
    sentence: str = ""  # the verdict in one sentence
    problem: str = ""  # why no target could be resolved (no reference, ...)

    @property
    def chosen(self) -> JobRecord | None:
        first = self.rows[0] if self.rows else None
        return first.record if first is not None and first.rank == 1 else None

    @property
    def reference(self) -> JobRecord | None:
        return self.target.reference if self.target else None

    def row(self, run_id: str) -> Row | None:
        return next((r for r in self.rows if r.record.run_id == run_id), None)

    def refusal(self) -> str:
        """Why nothing qualifies, one line per job."""
        if self.target is None:
            return self.problem
        lines = [f"no job of the sweep meets the constraints ({self.target.budget_reason}; "
                 f"device {self.target.device}, builder {self.target.builder_version}):"]
        lines += [f"  - {r.record.label} ({r.record.short_id}): {'; '.join(r.reasons)}"
                  for r in self.rows]
        lines.append("Relax --max-wer-delta/--max-wer, pick another --objective, or pass "
                     "--device/--builder-version for the jobs you mean.")
        return "\n".join(lines)


# --- intervals -------------------------------------------------------------------------

def interval(record: JobRecord, metric: str) -> tuple[float, float] | None:
    """The job's uncertainty on ``metric`` (module docstring), or None."""
    value = record.metric(metric)
    if value is None:
        return None
    if metric in PERCENT_METRICS:
        low, high = record.metric(f"{metric}_ci_low"), record.metric(f"{metric}_ci_high")
    else:
        low, high = record.metric(f"{metric}_min"), record.metric(f"{metric}_max")
    if low is None or high is None:
        return None
    return (min(low, value), max(high, value))


def format_value(record: JobRecord, metric: str) -> str:
    """``17.51 % [14.20, 21.00]`` for WER/CER, ``131.5 ms [128.7, 167.1]`` for a latency."""
    value = record.metric(metric)
    found = interval(record, metric)
    if metric in PERCENT_METRICS:
        text = units.percent(value)
        return f"{text} {units.interval_percent(*found)}" if found else text
    if value is None:
        return "—"
    if metric.endswith("_ms"):  # a latency: tenths of a millisecond, as the tables print
        text = f"{value:.1f} ms"
        return f"{text} [{found[0]:.1f}, {found[1]:.1f}]" if found else text
    text = f"{value:.4g}"
    return f"{text} [{found[0]:.4g}, {found[1]:.4g}]" if found else text


def format_delta(row: Row) -> str:
    """``+0.07 pts [-0.30, +0.45]``; ``—`` for the reference or where unknown."""
    if row.delta_wer is None:
        return "—"
    text = units.points(row.delta_wer)
    return f"{text} {units.interval_points(*row.delta_ci)}" if row.delta_ci else text


def _clearly_better(a: JobRecord, b: JobRecord, metric: str, maximize: bool) -> bool:
    """a beats b on ``metric`` beyond the noise: their intervals do not overlap (points:
    strictly better)."""
    va, vb = a.metric(metric), b.metric(metric)
    if va is None or vb is None:
        return False
    ia, ib = interval(a, metric), interval(b, metric)
    if ia is None or ib is None:
        return va > vb if maximize else va < vb
    return ia[0] > ib[1] + _EPSILON if maximize else ia[1] < ib[0] - _EPSILON


def _overlap(a: JobRecord, b: JobRecord, metric: str) -> bool:
    ia, ib = interval(a, metric), interval(b, metric)
    if ia is None or ib is None:  # points: only an exact tie is indistinguishable
        return a.metric(metric) == b.metric(metric)
    return ia[0] <= ib[1] + _EPSILON and ib[0] <= ia[1] + _EPSILON


class WerComparison:
    """Which of two jobs has the lower WER beyond the noise: the paired bootstrap interval
    of their difference where both logged per-utterance errors on the same utterances,
    else their own intervals."""

    def __init__(self, errors: Mapping[str, UtteranceErrors]) -> None:
        self.errors = errors

    def paired(self, a: JobRecord, b: JobRecord) -> tuple[float, float] | None:
        """The interval of WER(a) - WER(b), or None."""
        from sweep.evaluate.metrics import paired_delta_ci

        ea, eb = self.errors.get(a.run_id), self.errors.get(b.run_id)
        if ea is None or eb is None or set(ea.errors) != set(eb.errors):
            return None
        ids = sorted(ea.errors)
        return paired_delta_ci(np.array([ea.errors[i] for i in ids]),
                               np.array([eb.errors[i] for i in ids]),
                               np.array([ea.words[i] for i in ids]))

    def clearly_lower(self, a: JobRecord, b: JobRecord) -> bool:
        found = self.paired(a, b)
        if found is not None and all(math.isfinite(x) for x in found):
            return found[1] < 0
        return _clearly_better(a, b, "wer", maximize=False)


# --- the rules -------------------------------------------------------------------------

def fp32_reference(records: Iterable[JobRecord]) -> JobRecord | None:
    """The strictest fp32 reference (module docstring), or None."""
    refs = [r for r in records if r.is_fp32_reference]
    weak = [r for r in refs if not r.strongly_typed]
    return min(weak or refs, key=lambda r: (r.metric("wer"), r.job_num, r.run_id),
               default=None)


def comparable(records: Sequence[JobRecord]) -> None:
    """Refuse a set of runs measured on different test sets or model interfaces."""
    groups: dict[tuple[str, str], list[JobRecord]] = {}
    for r in records:
        if r.status == "FINISHED":
            groups.setdefault(r.group, []).append(r)
    if len(groups) > 1:
        listed = "; ".join(f"dataset {d}, model {m}: {len(rs)} job(s)"
                           for (d, m), rs in sorted(groups.items()))
        raise PromoteError(
            f"the sweep's jobs measured different datasets or model interfaces ({listed}); "
            "their WER and latency cannot be compared. Pick one with --dataset NAME and/or "
            "--model NAME.")


def resolve_target(records: Sequence[JobRecord], constraints: Constraints) -> Target:
    reference = fp32_reference(records)
    if constraints.max_wer is not None:
        budget = constraints.max_wer / 100
        budget_reason = f"WER ≤ {units.percent(budget)} (--max-wer)"
    elif reference is not None:
        ref_wer = reference.metric("wer") or 0.0
        budget = ref_wer + constraints.max_wer_delta / 100
        kind = " strongly typed" if reference.strongly_typed else ""
        budget_reason = (f"WER ≤ {units.percent(budget)} (fp32{kind} reference "
                         f"{units.percent(ref_wer)} + {constraints.max_wer_delta:g} points)")
    else:
        raise PromoteError(
            "the sweep has no FINISHED fp32 reference job (trt.precision=fp32, no layer "
            "overrides), so there is no WER to measure the others against. "
            "Add trt.precision=fp32 to the sweep, or give an absolute budget with --max-wer.")
    device = constraints.device or (reference.device if reference else None)
    version = constraints.builder_version or (reference.builder_version if reference else None)
    if not device or not version:
        raise PromoteError(
            "cannot tell the production device and builder version: the sweep has no FINISHED "
            "fp32 reference job to take them from. Pass --device and --builder-version "
            "(the values of the jobs' `device` and `builder_version` tags).")
    given = [name for name, value in (("--device", constraints.device),
                                      ("--builder-version", constraints.builder_version))
             if value]
    target_reason = (" and ".join(given) if len(given) == 2 else
                     f"{given[0]}, the rest from the fp32 reference" if given else
                     "from the fp32 reference")
    return Target(budget, budget_reason, device, version, target_reason, reference,
                  constraints.min_streams_at_slo)


def unjudged_reasons(record: JobRecord, constraints: Constraints,
                     device: str | None = None, builder_version: str | None = None
                     ) -> tuple[str, ...]:
    """Why a job's figures cannot enter the comparison at all (empty: they can)."""
    if record.status != "FINISHED":
        error = record.error
        if len(error) > 100:
            error = error[:99].rstrip() + "…"
        return (f"status {record.status}" + (f" ({error})" if error else ""),)
    if record.dry_run:
        return ("dry run: planned, not built or measured",)
    out: list[str] = []
    if record.measured is not None and not record.measured.same_sweep \
            and not constraints.allow_reused:
        out.append(f"{record.measured.describe()}: not measured with this sweep (+force=true "
                   "measures it again; tracking.reuse_across_sweeps=true compares it, marked)")
    if device is not None and record.device != device:
        out.append(f"device {record.device or '?'} is not {device}")
    if builder_version is not None and record.builder_version != builder_version:
        out.append(f"builder {record.builder_version or '?'} is not {builder_version}")
    return tuple(out)


def constraint_reasons(record: JobRecord, objective: Objective, target: Target,
                       constraints: Constraints) -> tuple[str, ...]:
    """Every constraint a judged job breaks, in the order a reader checks them."""
    out: list[str] = []
    wer = record.metric("wer")
    for name in dict.fromkeys(("wer", objective.metric)):
        if record.metric(name) is None:
            out.append(f"no {name} metric")
    if wer is not None and wer > target.wer_budget + _EPSILON:
        out.append(f"WER {units.percent(wer)} over the budget "
                   f"{units.percent(target.wer_budget)}")
    mismatch = record.tags.get(tag.PRECISION_MISMATCH)
    if mismatch and not constraints.allow_mismatch:
        out.append(f"the engine does not run its label's precision ({mismatch}); "
                   "--allow-precision-mismatch ships it anyway")
    if constraints.require_engine and record.engine_artifact is None:
        out.append("no engine artifact (tracking.log_engine=false?)")
    if target.min_streams_at_slo is not None:
        streams = record.metric("streams_at_slo")
        if streams is None:
            out.append("no streams_at_slo metric (sweep with eval.capacity=true)")
        elif streams < target.min_streams_at_slo:
            out.append(f"streams_at_slo {streams:g} below {target.min_streams_at_slo}")
    if constraints.max_gpu_memory_mib is not None:
        used = record.metric("gpu_memory_used_bytes")
        if used is None:
            out.append("no gpu_memory_used_bytes metric (measured on GPU hosts only)")
        elif used / 2**20 > constraints.max_gpu_memory_mib:
            out.append(f"GPU memory {used / 2**20:.0f} MiB over "
                       f"{constraints.max_gpu_memory_mib:g} MiB")
    return tuple(out)


_PRECISION_CHANGE = {"fp32": 0, "bf16": 1, "fp16": 1, "fp8": 2, "int8": 3}
_CONSTRAINT_RANK = {"none": 0, "prefer": 1, "obey": 2}


def simplicity(r: JobRecord) -> tuple[int, int, int, int]:
    """Lower is simpler: layer pins, precision change, precision constraints, opt level."""
    flags = r.flags
    if flags is None:
        return (r.pins, _PRECISION_CHANGE.get(r.precision, 4), 3, 3)
    return (r.pins, _PRECISION_CHANGE.get(flags.precision, 4),
            _CONSTRAINT_RANK.get(flags.precision_constraints, 3), flags.opt_level)


def front(records: Sequence[JobRecord], objective: Objective,
          wer: WerComparison) -> set[str]:
    """Run ids on the objective/WER front judged with the intervals (module docstring)."""
    scored = [r for r in records if r.metric("wer") is not None
              and r.metric(objective.metric) is not None]
    out: set[str] = set()
    for a in scored:
        dominated = False
        for b in scored:
            if b is a:
                continue
            b_faster = _clearly_better(b, a, objective.metric, objective.maximize)
            a_faster = _clearly_better(a, b, objective.metric, objective.maximize)
            b_lower = wer.clearly_lower(b, a)
            a_lower = wer.clearly_lower(a, b)
            if (b_faster and not a_lower) or (b_lower and not a_faster):
                dominated = True
                break
        if not dominated:
            out.add(a.run_id)
    return out


def _named(r: JobRecord) -> str:
    return f"{r.label} ({r.short_id})"


def decide(records: Sequence[JobRecord], objective: Objective, constraints: Constraints,
           errors: Mapping[str, UtteranceErrors] | None = None) -> Verdict:
    """The verdict (module docstring). Raises only when the runs are not comparable; a sweep
    without a reference gets a verdict with ``problem`` set and no recommendation."""
    comparable(records)
    wer = WerComparison(errors or {})
    try:
        target: Target | None = resolve_target(
            [r for r in records if not unjudged_reasons(r, constraints)], constraints)
    except PromoteError as exc:
        target, problem = None, str(exc)
    else:
        problem = ""
    device = target.device if target else None
    version = target.builder_version if target else None
    unjudged = {r.run_id: unjudged_reasons(r, constraints, device, version) for r in records}
    judged = [r for r in records if not unjudged[r.run_id]]
    on_front = front(judged, objective, wer)
    reference = target.reference if target else None

    def delta(r: JobRecord) -> tuple[float | None, tuple[float, float] | None]:
        if reference is None or r.metric("wer") is None or r is reference:
            return None, None
        ci = wer.paired(r, reference)
        d = (r.metric("wer") or 0.0) - (reference.metric("wer") or 0.0)
        return d, ci if ci is not None and all(math.isfinite(x) for x in ci) else None

    rows: dict[str, Row] = {}
    for r in records:
        d, ci = delta(r)
        if unjudged[r.run_id]:
            rows[r.run_id] = Row(r, unjudged[r.run_id], False, None, False, d, ci)
        else:
            why = constraint_reasons(r, objective, target, constraints) if target else ()
            rows[r.run_id] = Row(r, why, True, None, r.run_id in on_front, d, ci)
    good = [r for r in judged if target is not None and not rows[r.run_id].reasons]
    sign = -1.0 if objective.maximize else 1.0

    def key(r: JobRecord) -> tuple[float, float, int, str]:
        return (sign * (r.metric(objective.metric) or 0.0), r.metric("wer") or 0.0,
                r.job_num, r.run_id)

    order = sorted(good, key=key)
    tied: tuple[JobRecord, ...] = ()
    decision = ""
    metric = objective.metric
    if order:
        best = order[0]
        group = [r for r in order if _overlap(best, r, metric)]
        if len(group) > 1:
            winner = min(group, key=lambda r: (simplicity(r), key(r)))
            tied = tuple([winner] + [r for r in group if r is not winner])
            decision = ("indistinguishable: " + ", ".join(
                f"{_named(r)} {metric} {format_value(r, metric)}" for r in group)
                + f" overlap; the simpler flag set {_named(winner)} is chosen")
            order = [winner] + [r for r in order if r is not winner]
        elif len(order) > 1:
            runner = order[1]
            decision = (f"{_named(best)} wins: {metric} {format_value(best, metric)} is clear "
                        f"of the next, {_named(runner)} {format_value(runner, metric)}")
        else:
            decision = f"{_named(best)} is the only qualifier"
    ranked = [_ranked(rows[r.run_id], rank) for rank, r in enumerate(order, start=1)]
    rest = sorted((row for row in rows.values() if row.record.run_id not in
                   {r.run_id for r in order}),
                  key=lambda row: (not row.judged, row.record.job_num, row.record.run_id))
    verdict = Verdict(objective, target, tuple(ranked + rest), tied, decision, "", problem)
    return _with_sentence(verdict)


def _ranked(row: Row, rank: int) -> Row:
    return Row(row.record, row.reasons, row.judged, rank, row.on_front, row.delta_wer,
               row.delta_ci)


def _with_sentence(v: Verdict) -> Verdict:
    return Verdict(v.objective, v.target, v.rows, v.indistinguishable, v.decision,
                   sentence(v), v.problem)


def sentence(v: Verdict) -> str:
    """The verdict in one sentence, with its uncertainty."""
    metric = v.objective.metric
    chosen = v.chosen
    if v.target is None:
        return f"No engine to recommend: {v.problem}"
    if chosen is None:
        judged = sum(r.judged for r in v.rows)
        return (f"No engine to recommend: none of the {judged} judged job(s) meets "
                f"{v.target.budget_reason}" + (
                    f" ({len(v.rows) - judged} not judged)" if judged < len(v.rows) else "")
                + ".")
    row = v.rows[0]
    accuracy = f"WER {format_value(chosen, 'wer')}"
    if row.delta_wer is not None:
        accuracy += f", {format_delta(row)} against fp32"
    elif v.reference is not None and chosen.run_id == v.reference.run_id:
        accuracy += " (the fp32 reference itself)"
    others = [r for r in v.rows[1:] if r.ok]
    if v.indistinguishable:
        rivals = [r for r in v.indistinguishable if r.run_id != chosen.run_id]
        names = ", ".join(f"{r.label} {format_value(r, metric)}" for r in rivals)
        why = (f"its {metric} {format_value(chosen, metric)} cannot be told apart from "
               f"{names}, and it is the simplest of them")
    elif others:
        runner = others[0].record
        why = (f"{v.objective.describe()}, {format_value(chosen, metric)}, clear of the next "
               f"({runner.label}, {format_value(runner, metric)})")
    else:
        why = f"the only job within {v.target.budget_reason}"
    mark = " (measured in another sweep)" if row.reused else ""
    return f"Ship {chosen.label}{mark} (run {chosen.short_id}): {why}; {accuracy}."


@dataclass(frozen=True)
class Judged:
    """A verdict per group of comparable jobs (one dataset and model interface each)."""

    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    def row(self, run_id: str) -> Row | None:
        for v in self.verdicts:
            found = v.row(run_id)
            if found is not None:
                return found
        return None


def decide_groups(records: Sequence[JobRecord], objective: Objective,
                  constraints: Constraints,
                  errors: Mapping[str, UtteranceErrors] | None = None) -> Judged:
    """One verdict per dataset/model group (a sweep normally has one). Jobs that never
    reached their data (no digest) join the largest group, to be listed as not judged."""
    finished_groups: dict[tuple[str, str], list[JobRecord]] = {}
    for r in records:
        if r.status == "FINISHED":
            finished_groups.setdefault(r.group, []).append(r)
    if len(finished_groups) <= 1:
        return Judged((decide(records, objective, constraints, errors),))
    main = max(finished_groups, key=lambda g: len(finished_groups[g]))

    def home(r: JobRecord) -> tuple[str, str]:
        return r.group if r.group in finished_groups else main

    out = []
    for group, members in sorted(finished_groups.items()):
        extra = [r for r in records if r.status != "FINISHED" and home(r) == group]
        out.append(decide(members + extra, objective, constraints, errors))
    return Judged(tuple(out))
