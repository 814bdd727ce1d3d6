"""The verdict as data in, data out (sweep/verdict.py): the rules promote and the summary
share. The same rules run against real MLflow stores in tests/unit/tracking/test_summary.py
and tests/integration/test_promote.py."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from sweep.errors import PromoteError
from sweep.flags import FlagSet
from sweep.tracking import tags as tag
from sweep.tracking.records import JobRecord, Measured, UtteranceErrors
from sweep.verdict import (
    Constraints,
    Objective,
    WerComparison,
    decide,
    fp32_reference,
    front,
    simplicity,
)

TAGS = {tag.DEVICE: "cpu:x86_64", tag.BUILDER_VERSION: "emulate-1", tag.DATASET: "demo_tiny",
        tag.MODEL_NAME: "demo_monolithic", tag.BUILDER: "emulate"}


def job(num: int, precision: str = "fp16", wer: float = 0.10, p99: float | None = 10.0,
        status: str = "FINISHED", flags: Mapping[str, object] | None = None,
        streams_at_slo: float | None = None, tags: Mapping[str, str] | None = None,
        **metrics: float) -> JobRecord:
    values = {"wer": wer, **({"latency_p99_ms": p99} if p99 is not None else {}),
              "throughput_chunks_s": 1000.0 / (p99 or 1),
              **({"streams_at_slo": streams_at_slo} if streams_at_slo is not None else {}),
              **metrics}
    flag_set = FlagSet.from_mapping({"precision": precision, **(flags or {})})
    return JobRecord(f"run{num:02d}", f"{flag_set.label}-{num}", status, num, values,
                     flag_set.params(), {**TAGS, **(tags or {})}, flag_set,
                     engine_artifact="engine/model.onnx")


def select(jobs: list[JobRecord], objective: Objective | None = None,
           constraints: Constraints | None = None, errors: Mapping[str, UtteranceErrors] |
           None = None):
    return decide(jobs, objective or Objective(), constraints or Constraints(), errors)


def test_objective_parsing():
    assert Objective.parse("latency_p99_ms") == Objective("latency_p99_ms", False)
    assert Objective.parse("throughput_chunks_s:max") == Objective("throughput_chunks_s", True)
    with pytest.raises(PromoteError, match="METRIC:max"):
        Objective.parse("wer:best")


def test_the_strictest_plain_fp32_job_is_the_reference():
    jobs = [job(0, "fp32", wer=0.12), job(1, "fp32", wer=0.10),
            job(2, "fp32", wer=0.05, flags={"strongly_typed": True}),
            job(3, "fp32", wer=0.04, flags={"layer_precisions": {"Softmax": "fp32"},
                                            "precision_constraints": "obey"}),
            job(4, "fp32", wer=0.03, status="FAILED"), job(5, "fp16", wer=0.01)]
    ref = fp32_reference(jobs)
    assert ref is not None and ref.run_id == "run01"


def test_budget_is_reference_plus_points_inclusive():
    jobs = [job(0, "fp32", wer=0.10, p99=30), job(1, wer=0.105, p99=20),
            job(2, wer=0.1051, p99=10)]
    verdict = select(jobs)
    assert verdict.chosen is not None and verdict.chosen.run_id == "run01"
    rejected = {r.record.run_id: r.reasons for r in verdict.rows if r.judged and not r.ok}
    assert rejected == {"run02": ("WER 10.51 % over the budget 10.50 %",)}


def test_ties_go_to_lower_wer_then_earlier_job():
    jobs = [job(0, "fp32", wer=0.10, p99=50), job(3, wer=0.102, p99=10),
            job(2, wer=0.101, p99=10), job(1, wer=0.101, p99=10)]
    order = [r.record.run_id for r in select(jobs).rows]
    assert order == ["run01", "run02", "run03", "run00"]


def test_unjudged_and_rejected_rows_say_every_reason():
    other = job(9, "bf16", wer=0.5, p99=None,
                tags={tag.DEVICE: "gpu:0", tag.BUILDER_VERSION: "x"})
    unlogged = replace(job(8, "bf16", wer=0.5, p99=math.nan), engine_artifact=None)
    verdict = select([job(0, "fp32"), other, unlogged])
    rows = {r.record.run_id: r for r in verdict.rows}
    assert not rows["run09"].judged
    assert rows["run09"].reasons == ("device gpu:0 is not cpu:x86_64",
                                     "builder x is not emulate-1")
    assert rows["run08"].judged and rows["run08"].reasons == (
        "no latency_p99_ms metric", "WER 50.00 % over the budget 10.50 %",
        "no engine artifact (tracking.log_engine=false?)")


def test_failed_and_dry_run_jobs_are_listed_not_judged():
    dry = job(2, tags={tag.DRY_RUN: "true"})
    failed = job(3, status="FAILED", tags={tag.ERROR: "trtexec: rejected"})
    verdict = select([job(0, "fp32"), job(1), dry, failed])
    rows = {r.record.run_id: r for r in verdict.rows}
    assert rows["run02"].reasons == ("dry run: planned, not built or measured",)
    assert rows["run03"].reasons == ("status FAILED (trtexec: rejected)",)
    assert not rows["run02"].judged and not rows["run03"].judged
    assert not rows["run02"].on_front  # the front is drawn among judged jobs only


def test_maximised_objective_and_absolute_budget():
    jobs = [job(0, "fp32", wer=0.10, p99=20), job(1, wer=0.2, p99=5), job(2, wer=0.3, p99=1)]
    verdict = select(jobs, Objective("throughput_chunks_s", True), Constraints(max_wer=25))
    assert verdict.chosen is not None and verdict.chosen.run_id == "run01"
    assert verdict.target is not None
    assert verdict.target.budget_reason == "WER ≤ 25.00 % (--max-wer)"


def test_without_a_reference_no_engine_is_recommended_and_the_sentence_says_why():
    jobs = [job(1, wer=0.2), job(2, wer=0.1)]
    verdict = select(jobs)
    assert verdict.chosen is None and "no FINISHED fp32 reference" in verdict.sentence
    chosen = select(jobs, constraints=Constraints(max_wer=30, device="cpu:x86_64",
                                                  builder_version="emulate-1")).chosen
    assert chosen is not None and chosen.run_id == "run02"  # same p99: the lower WER wins


def _ci(r: JobRecord, **metrics: float) -> JobRecord:
    return replace(r, metrics={**r.metrics, **metrics})


def test_the_issue_case_overlapping_ranges_put_both_on_the_front_and_the_simpler_wins():
    """fp32-o5 is faster on the number (131.5 against 138.3 ms) but the ranges over the
    repeats overlap: both are on the front, and the verdict ships fp32-o0 (lower opt
    level), saying why; the same verdict then stars it in every report."""
    o5 = _ci(job(1, "fp32", wer=0.1751, p99=131.5, flags={"opt_level": 5}),
             latency_p99_ms_min=128.7, latency_p99_ms_max=167.1)
    o0 = _ci(job(0, "fp32", wer=0.1751, p99=138.3, flags={"opt_level": 0}),
             latency_p99_ms_min=105.2, latency_p99_ms_max=148.3)
    verdict = select([o0, o5])
    assert verdict.chosen is not None and verdict.chosen.run_id == "run00"
    assert {r.record.run_id for r in verdict.rows if r.on_front} == {"run00", "run01"}
    assert {r.run_id for r in verdict.indistinguishable} == {"run00", "run01"}
    assert verdict.sentence.startswith("Ship fp32-o0-0 (run run00): its latency_p99_ms")
    assert "cannot be told apart" in verdict.sentence and "17.51 %" in verdict.sentence


def test_a_clear_latency_win_beats_the_simpler_flag_set_and_dominates():
    fp32 = _ci(job(0, "fp32", wer=0.10, p99=40), latency_p99_ms_min=38, latency_p99_ms_max=42)
    bf16 = _ci(job(1, "bf16", wer=0.10, p99=20), latency_p99_ms_min=18, latency_p99_ms_max=23)
    verdict = select([fp32, bf16])
    assert verdict.chosen is not None and verdict.chosen.run_id == "run01"
    assert verdict.indistinguishable == () and " wins: " in verdict.decision
    # fp32 is slower beyond the noise and not better in WER: dominated.
    assert [r.record.run_id for r in verdict.rows if r.on_front] == ["run01"]


def _errors(per_utt: list[float], words: float = 10.0) -> UtteranceErrors:
    ids = [f"u{i:03d}" for i in range(len(per_utt))]
    return UtteranceErrors(dict(zip(ids, per_utt, strict=True)), {i: words for i in ids})


def test_paired_interval_tells_a_consistent_wer_gain_from_noise():
    """Utterance difficulty varies a lot (the marginal WER intervals overlap widely), but b
    is one error better on every utterance: the paired interval of the difference is below
    zero, so b beats a on WER beyond the noise, and a is dominated at equal latency."""
    rng = np.random.default_rng(0)
    base = rng.integers(1, 9, size=60).astype(float)
    a = _ci(job(0, "fp32", wer=float(base.sum() / 600), p99=10),
            wer_ci_low=0.2, wer_ci_high=0.6)
    b = _ci(job(1, "fp16", wer=float((base - 1).sum() / 600), p99=10),
            wer_ci_low=0.15, wer_ci_high=0.55)
    errors = {"run00": _errors(base.tolist()), "run01": _errors((base - 1).tolist())}
    compare = WerComparison(errors)
    low, high = compare.paired(b, a) or (math.nan, math.nan)
    assert high < 0 and high - low < 0.05  # narrower than the marginal intervals (0.4)
    assert compare.clearly_lower(b, a) and not compare.clearly_lower(a, b)
    assert front([a, b], Objective(), compare) == {"run01"}
    # Without per-utterance errors the marginal intervals overlap: both stay on the front.
    assert front([a, b], Objective(), WerComparison({})) == {"run00", "run01"}
    verdict = select([a, b], errors=errors)
    row = verdict.row("run01")
    assert row is not None and row.delta_ci is not None and row.delta_ci[1] < 0
    assert row.delta_wer == pytest.approx(-0.1)


def test_a_job_from_another_sweep_is_not_judged_unless_reuse_was_asked_and_then_marked():
    measured = Measured("old", "other-sweep", datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
                        same_sweep=False)
    copied = replace(job(1, wer=0.10, p99=5), measured=measured,
                     tags={**TAGS, tag.RESUMED_FROM: "old"})
    verdict = select([job(0, "fp32", wer=0.10, p99=30), copied])
    row = verdict.row("run01")
    assert row is not None and not row.judged and verdict.chosen is not None
    assert verdict.chosen.run_id == "run00"
    assert "measured in sweep other-sw" in row.reasons[0] and "2026-11-30 12:00" in row.reasons[0]
    allowed = select([job(0, "fp32", wer=0.10, p99=30), copied],
                     constraints=Constraints(allow_reused=True))
    row = allowed.row("run01")
    assert row is not None and row.judged and row.reused and row.rank == 1
    assert "(measured in another sweep)" in allowed.sentence
    # A resumption of the same sweep command is judged as its own, unmarked.
    same = replace(copied, measured=replace(measured, same_sweep=True))
    row = select([job(0, "fp32", wer=0.10, p99=30), same]).row("run01")
    assert row is not None and row.judged and not row.reused


def test_simplicity_order():
    pinned = job(0, "bf16", flags={"layer_precisions": {"Softmax": "fp32",
                                                        "LayerNormalization": "fp32"},
                                   "precision_constraints": "obey"})
    assert simplicity(job(1, "fp32")) < simplicity(job(2, "fp16")) < simplicity(pinned)
    assert simplicity(job(3, "fp16", flags={"opt_level": 0})) < simplicity(job(4, "fp16"))


def test_runs_of_two_datasets_are_refused():
    other = job(1, tags={tag.DATASET: "b"})
    with pytest.raises(PromoteError, match="different datasets or model interfaces"):
        select([job(0, "fp32"), other])


def test_capacity_as_a_constraint_and_as_the_objective():
    jobs = [job(0, "fp32", wer=0.10, p99=30, streams_at_slo=40.0),
            job(1, wer=0.10, p99=20, streams_at_slo=24.0),
            job(2, wer=0.10, p99=25, streams_at_slo=64.0)]
    verdict = select(jobs, constraints=Constraints(min_streams_at_slo=32))
    assert verdict.chosen is not None and verdict.chosen.run_id == "run02"
    rejected = {r.record.run_id: r.reasons for r in verdict.rows if r.judged and not r.ok}
    assert rejected["run01"] == ("streams_at_slo 24 below 32",)
    most = select(jobs, Objective.parse("streams_at_slo:max")).chosen
    assert most is not None and most.run_id == "run02"


def test_an_engine_that_does_not_run_its_labels_precision_qualifies_only_when_forced():
    fp16 = job(1, wer=0.10, p99=5, tags={tag.PRECISION_MISMATCH: "0 % of layers in fp16"})
    verdict = select([job(0, "fp32", wer=0.10, p99=30), fp16])
    row = verdict.row("run01")
    assert row is not None and row.judged and row.rank is None
    assert row.reasons == ("the engine does not run its label's precision (0 % of layers in "
                           "fp16); --allow-precision-mismatch ships it anyway",)
    assert verdict.chosen is not None and verdict.chosen.run_id == "run00"
    forced = select([job(0, "fp32", wer=0.10, p99=30), fp16],
                    constraints=Constraints(allow_mismatch=True))
    assert forced.chosen is not None and forced.chosen.run_id == "run01"


def test_gpu_memory_as_an_optional_constraint():
    small = job(1, wer=0.10, p99=8, gpu_memory_used_bytes=512 * 2**20)
    large = job(2, wer=0.10, p99=5, gpu_memory_used_bytes=4096 * 2**20)
    jobs = [job(0, "fp32", wer=0.10, p99=30, gpu_memory_used_bytes=600 * 2**20), small, large]
    assert (select(jobs).chosen or small).run_id == "run02"  # no constraint: the fastest
    verdict = select(jobs, constraints=Constraints(max_gpu_memory_mib=1024))
    assert verdict.chosen is not None and verdict.chosen.run_id == "run01"
    row = verdict.row("run02")
    assert row is not None and row.reasons == ("GPU memory 4096 MiB over 1024 MiB",)
    cpu = select([job(0, "fp32"), job(1)], constraints=Constraints(max_gpu_memory_mib=1024))
    assert cpu.chosen is None and "measured on GPU hosts only" in cpu.rows[0].reasons[0]
