"""Which job of a finished sweep goes to production: constraints first, then one objective.

Pure data in, data out: ``sweep/promote/cli.py`` reads the runs from MLflow into
``Candidate`` records and prints the ``Selection``; nothing here talks to a store.

Rules (docs/promote.md):

* The fp32 reference is a FINISHED job with ``trt.precision=fp32`` without layer
  overrides: the accuracy every other flag set is measured against. A weakly typed one is
  preferred; a strongly typed one (the ONNX's own types) serves where the sweep has no
  other, as on TensorRT 11, which builds nothing else. When a sweep holds several (e.g.
  ``opt_level=0,5``), the one with the lowest WER is taken, so the budget is the strictest
  the sweep supports (ties: earlier job, then run id).
* A candidate qualifies when it FINISHED, has the WER and objective metrics, ran on the
  target device with the target builder version, stays within the WER budget and logged
  its engine. Every failed rule is reported, not only the first.
* The qualifying candidates are ranked by the objective; exact ties go to the lower WER,
  then the earlier job (``job.num``), then the smaller run id, so the choice never depends
  on the order the store returns runs in.
* The best-ranked candidate wins only when its advantage exceeds the intervals: its
  objective's interval (WER/CER: the 95 % bootstrap interval over utterances,
  ``wer_ci_low``/``wer_ci_high``; a latency: the range across ``eval.repeats`` passes,
  ``<metric>_min``/``<metric>_max``) must not overlap any other qualifier's. Otherwise the
  candidates whose intervals overlap the best one's are *indistinguishable*, and the
  simplest flag set among them is chosen (``simplicity``: fewer layer pins, then the
  smaller precision change fp32 < bf16 = fp16 < fp8 < int8, then weaker precision
  constraints, then the lower opt level; then the objective's ranking). A metric without
  an interval (one repeat, runs logged before intervals existed) compares as a point.
* Runs of different datasets or model interfaces are never compared (``comparable``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sweep.errors import PromoteError

# WER is logged as a fraction; budgets are given in percentage points, as people quote WER.
# The epsilon keeps "reference + 0.5 points" from rejecting a candidate at exactly that WER
# because 0.12 + 0.005 is not representable exactly.
_EPSILON = 1e-9
_NO_OVERRIDE = ("", "-", "{}")


@dataclass(frozen=True)
class Candidate:
    """One job run of a sweep, as the selection needs it."""

    run_id: str
    label: str
    status: str
    job_num: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    engine_artifact: str | None = None  # e.g. "engine/model.plan"; None when not logged
    # A job resumed from an identical FINISHED run (tag resumed_from) has no artifacts of its
    # own: its engine and Triton config are the original run's.
    artifacts_run_id: str | None = None

    def metric(self, name: str) -> float | None:
        """The metric's value, or None when it is missing or NaN (a job that died midway)."""
        value = self.metrics.get(name)
        if value is None or math.isnan(value):
            return None
        return float(value)

    @property
    def device(self) -> str:
        return self.tags.get("device", "")

    @property
    def builder_version(self) -> str:
        return self.tags.get("builder_version", "")

    @property
    def artifact_run(self) -> str:
        """The run that holds this job's engine and configs."""
        return self.artifacts_run_id or self.run_id

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def is_fp32_reference(self) -> bool:
        """fp32, no per-layer overrides: the sweep's accuracy baseline."""
        p = self.params
        return (self.status == "FINISHED" and self.metric("wer") is not None
                and p.get("trt.precision") == "fp32"
                and p.get("trt.layer_precisions", "-") in _NO_OVERRIDE
                and p.get("trt.layer_output_types", "-") in _NO_OVERRIDE)

    @property
    def strongly_typed(self) -> bool:
        return self.params.get("trt.strongly_typed", "False").lower() == "true"


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
                "latency_p99_ms or throughput_chunks_s:max."
            )
        return cls(name, direction == "max")

    def describe(self) -> str:
        return f"{'highest' if self.maximize else 'lowest'} {self.metric}"


@dataclass(frozen=True)
class Constraints:
    """What a candidate must satisfy. WER figures are percentage points (0.5 = 0.5 % WER)."""

    max_wer_delta: float = 0.5
    max_wer: float | None = None  # absolute; replaces the reference-relative budget
    device: str | None = None
    builder_version: str | None = None
    # Calls the engine serves within the latency SLO (eval.capacity=true's streams_at_slo).
    min_streams_at_slo: int | None = None


@dataclass(frozen=True)
class Target:
    """The resolved constraints: a WER bound (fraction) and the production device/builder."""

    wer_budget: float
    budget_reason: str
    device: str
    builder_version: str
    target_reason: str
    reference: Candidate | None
    min_streams_at_slo: int | None = None


@dataclass(frozen=True)
class Verdict:
    candidate: Candidate
    reasons: tuple[str, ...]  # empty: qualifies
    rank: int | None = None  # 1 = chosen

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Selection:
    objective: Objective
    target: Target
    verdicts: tuple[Verdict, ...]  # chosen first, then the other qualifiers, then rejects
    # The qualifiers the chosen one cannot be told apart from (chosen included), empty when
    # it wins outright; the sentence that says which.
    indistinguishable: tuple[Candidate, ...] = ()
    decision: str = ""

    @property
    def chosen(self) -> Candidate | None:
        first = self.verdicts[0] if self.verdicts else None
        return first.candidate if first is not None and first.ok else None

    def refusal(self) -> str:
        """Why nothing qualifies, one line per candidate."""
        lines = [f"no job of the sweep meets the constraints ({self.target.budget_reason}; "
                 f"device {self.target.device}, builder {self.target.builder_version}):"]
        lines += [f"  - {v.candidate.label} ({v.candidate.short_id}): {'; '.join(v.reasons)}"
                  for v in self.verdicts]
        lines.append("Relax --max-wer-delta/--max-wer, pick another --objective, or pass "
                     "--device/--builder-version for the jobs you mean.")
        return "\n".join(lines)


def _percent(wer: float) -> str:
    return f"{wer * 100:.2f} %"


def fp32_reference(candidates: Iterable[Candidate]) -> Candidate | None:
    """The strictest fp32 reference of the sweep (module docstring), or None."""
    refs = [c for c in candidates if c.is_fp32_reference]
    weak = [c for c in refs if not c.strongly_typed]
    return min(weak or refs, key=lambda c: (c.metric("wer"), c.job_num, c.run_id),
               default=None)


def resolve_target(candidates: list[Candidate], constraints: Constraints) -> Target:
    reference = fp32_reference(candidates)
    if constraints.max_wer is not None:
        budget = constraints.max_wer / 100
        budget_reason = f"WER ≤ {_percent(budget)} (--max-wer)"
    elif reference is not None:
        ref_wer = reference.metric("wer") or 0.0
        budget = ref_wer + constraints.max_wer_delta / 100
        kind = " strongly typed" if reference.strongly_typed else ""
        budget_reason = (f"WER ≤ {_percent(budget)} (fp32{kind} reference "
                         f"{_percent(ref_wer)} + {constraints.max_wer_delta:g} points)")
    else:
        raise PromoteError(
            "the sweep has no FINISHED fp32 reference job (trt.precision=fp32, no layer "
            "overrides), so there is no WER to measure the others against. "
            "Add trt.precision=fp32 to the sweep, or give an absolute budget with --max-wer."
        )
    device = constraints.device or (reference.device if reference else None)
    version = constraints.builder_version or (reference.builder_version if reference else None)
    if not device or not version:
        raise PromoteError(
            "cannot tell the production device and builder version: the sweep has no FINISHED "
            "fp32 reference job to take them from. Pass --device and --builder-version "
            "(the values of the jobs' `device` and `builder_version` tags)."
        )
    given = [name for name, value in (("--device", constraints.device),
                                      ("--builder-version", constraints.builder_version))
             if value]
    target_reason = (" and ".join(given) if len(given) == 2 else
                     f"{given[0]}, the rest from the fp32 reference" if given else
                     "from the fp32 reference")
    return Target(budget, budget_reason, device, version, target_reason, reference,
                  constraints.min_streams_at_slo)


def reasons(candidate: Candidate, objective: Objective, target: Target) -> tuple[str, ...]:
    """Every rule the candidate breaks, in the order a reader checks them."""
    out: list[str] = []
    if candidate.status != "FINISHED":
        error = candidate.tags.get("error", "")
        if len(error) > 100:
            error = error[:99].rstrip() + "…"
        out.append(f"status {candidate.status}" + (f" ({error})" if error else ""))
        return tuple(out)  # a failed job's other figures mean nothing
    wer = candidate.metric("wer")
    for name in dict.fromkeys(("wer", objective.metric)):
        if candidate.metric(name) is None:
            out.append(f"no {name} metric")
    if candidate.device != target.device:
        out.append(f"device {candidate.device or '?'} is not {target.device}")
    if candidate.builder_version != target.builder_version:
        out.append(f"builder {candidate.builder_version or '?'} is not "
                   f"{target.builder_version}")
    if wer is not None and wer > target.wer_budget + _EPSILON:
        out.append(f"WER {_percent(wer)} over the budget {_percent(target.wer_budget)}")
    if candidate.engine_artifact is None:
        out.append("no engine artifact (tracking.log_engine=false?)")
    if target.min_streams_at_slo is not None:
        streams = candidate.metric("streams_at_slo")
        if streams is None:
            out.append("no streams_at_slo metric (sweep with eval.capacity=true)")
        elif streams < target.min_streams_at_slo:
            out.append(f"streams_at_slo {streams:g} below {target.min_streams_at_slo}")
    return tuple(out)


_PRECISION_CHANGE = {"fp32": 0, "bf16": 1, "fp16": 1, "fp8": 2, "int8": 3}
_CONSTRAINT_RANK = {"none": 0, "prefer": 1, "obey": 2}


def _pins(value: str) -> int:
    return 0 if value in _NO_OVERRIDE else len([p for p in value.split(",") if p])


def simplicity(c: Candidate) -> tuple[int, int, int, int]:
    """Lower is simpler: layer pins, precision change, precision constraints, opt level."""
    p = c.params
    try:
        opt = int(p.get("trt.opt_level", "3"))
    except ValueError:
        opt = 3
    return (_pins(p.get("trt.layer_precisions", "-")) + _pins(p.get("trt.layer_output_types",
                                                                     "-")),
            _PRECISION_CHANGE.get(p.get("trt.precision", "fp32"), 4),
            _CONSTRAINT_RANK.get(p.get("trt.precision_constraints", "none"), 3), opt)


def interval(c: Candidate, metric: str) -> tuple[float, float] | None:
    """The candidate's uncertainty on ``metric`` (module docstring), or None."""
    value = c.metric(metric)
    if value is None:
        return None
    if metric in ("wer", "cer"):
        low, high = c.metric(f"{metric}_ci_low"), c.metric(f"{metric}_ci_high")
    else:
        low, high = c.metric(f"{metric}_min"), c.metric(f"{metric}_max")
    if low is None or high is None:
        return None
    return (min(low, value), max(high, value))


def _overlap(a: Candidate, b: Candidate, metric: str) -> bool:
    ia, ib = interval(a, metric), interval(b, metric)
    if ia is None or ib is None:  # points: only an exact tie is indistinguishable
        return a.metric(metric) == b.metric(metric)
    return ia[0] <= ib[1] + _EPSILON and ib[0] <= ia[1] + _EPSILON


def format_interval(c: Candidate, metric: str, percent: bool = False) -> str:
    found = interval(c, metric)
    if found is None:
        return ""
    scale = 100 if percent else 1
    return f"[{found[0] * scale:.4g}, {found[1] * scale:.4g}]"


def comparable(candidates: list[Candidate]) -> None:
    """Refuse a set of runs measured on different test sets or model interfaces: their
    figures say nothing about each other."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        dataset = c.tags.get("dataset_digest") or c.tags.get("dataset", "")
        groups.setdefault((c.tags.get("dataset", "?") + "@" + dataset,
                           c.tags.get("model", "?")), []).append(c)
    if len(groups) > 1:
        listed = "; ".join(f"dataset {d}, model {m}: {len(cs)} job(s)"
                           for (d, m), cs in sorted(groups.items()))
        raise PromoteError(
            f"the sweep's jobs measured different datasets or model interfaces ({listed}); "
            "their WER and latency cannot be compared. Pick one with --dataset NAME and/or "
            "--model NAME.")


def select(candidates: list[Candidate], objective: Objective,
           constraints: Constraints) -> Selection:
    """Rank the qualifying candidates and decide between the best ones by their intervals
    (module docstring); raises only when the constraints themselves cannot be resolved or
    the runs are not comparable. ``Selection.chosen`` is None when nothing qualifies."""
    comparable(candidates)
    target = resolve_target(candidates, constraints)
    judged = [(c, reasons(c, objective, target)) for c in candidates]
    good = [c for c, why in judged if not why]
    sign = -1.0 if objective.maximize else 1.0

    def key(c: Candidate) -> tuple[float, float, int, str]:
        return (sign * (c.metric(objective.metric) or 0.0), c.metric("wer") or 0.0,
                c.job_num, c.run_id)

    order = sorted(good, key=key)
    tied: tuple[Candidate, ...] = ()
    decision = ""
    metric = objective.metric
    if order:
        best = order[0]
        group = [c for c in order if _overlap(best, c, metric)]
        if len(group) > 1:
            winner = min(group, key=lambda c: (simplicity(c), key(c)))
            tied = tuple([winner] + [c for c in group if c is not winner])
            decision = (
                "indistinguishable: " + ", ".join(
                    f"{c.label} ({c.short_id}) {metric} {c.metric(metric):.4g} "
                    f"{format_interval(c, metric) or '(no interval)'}" for c in group)
                + f" overlap; the simpler flag set {winner.label} ({winner.short_id}) is "
                "chosen")
            order = [winner] + [c for c in order if c is not winner]
        elif len(order) > 1:
            runner = order[1]
            decision = (f"{best.label} ({best.short_id}) wins: {metric} "
                        f"{best.metric(metric):.4g} {format_interval(best, metric)} is clear "
                        f"of the next, {runner.label} ({runner.short_id}) "
                        f"{runner.metric(metric):.4g} {format_interval(runner, metric)}")
        else:
            decision = f"{best.label} ({best.short_id}) is the only qualifier"
    ranked = [Verdict(c, (), rank) for rank, c in enumerate(order, start=1)]
    rejected = [Verdict(c, why) for c, why in sorted(judged, key=lambda cw: (cw[0].job_num,
                                                                            cw[0].run_id))
                if why]
    return Selection(objective, target, tuple(ranked + rejected), tied, decision)
