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


@dataclass(frozen=True)
class Target:
    """The resolved constraints: a WER bound (fraction) and the production device/builder."""

    wer_budget: float
    budget_reason: str
    device: str
    builder_version: str
    target_reason: str
    reference: Candidate | None


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
    return Target(budget, budget_reason, device, version, target_reason, reference)


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
    return tuple(out)


def select(candidates: list[Candidate], objective: Objective,
           constraints: Constraints) -> Selection:
    """Rank the qualifying candidates (module docstring); raises only when the constraints
    themselves cannot be resolved. ``Selection.chosen`` is None when nothing qualifies."""
    target = resolve_target(candidates, constraints)
    judged = [(c, reasons(c, objective, target)) for c in candidates]
    good = [c for c, why in judged if not why]
    sign = -1.0 if objective.maximize else 1.0

    def key(c: Candidate) -> tuple[float, float, int, str]:
        return (sign * (c.metric(objective.metric) or 0.0), c.metric("wer") or 0.0,
                c.job_num, c.run_id)

    ranked = [Verdict(c, (), rank) for rank, c in enumerate(sorted(good, key=key), start=1)]
    rejected = [Verdict(c, why) for c, why in sorted(judged, key=lambda cw: (cw[0].job_num,
                                                                            cw[0].run_id))
                if why]
    return Selection(objective, target, tuple(ranked + rejected))
