"""Selection rules as data in, data out (sweep/promote/selection.py). The same rules run against
real MLflow stores in tests/integration/test_promote.py."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from sweep.errors import PromoteError
from sweep.promote.selection import Candidate, Constraints, Objective, fp32_reference, select

TAGS = {"device": "cpu:x86_64", "builder_version": "emulate-1"}


def job(num: int, precision: str = "fp16", wer: float = 0.10, p99: float | None = 10.0,
        status: str = "FINISHED", params: Mapping[str, str] | None = None,
        streams_at_slo: float | None = None) -> Candidate:
    metrics = {"wer": wer, **({"latency_p99_ms": p99} if p99 is not None else {}),
               "throughput_chunks_s": 1000.0 / (p99 or 1),
               **({"streams_at_slo": streams_at_slo} if streams_at_slo is not None else {})}
    return Candidate(f"run{num:02d}", f"{precision}-{num}", status, num, metrics,
                     {"trt.precision": precision, "trt.strongly_typed": "False",
                      "trt.layer_precisions": "-", "trt.layer_output_types": "-", **(params or {})},
                     dict(TAGS), "engine/model.onnx")


def test_objective_parsing():
    assert Objective.parse("latency_p99_ms") == Objective("latency_p99_ms", False)
    assert Objective.parse("throughput_chunks_s:max") == Objective("throughput_chunks_s", True)
    with pytest.raises(PromoteError, match="METRIC:max"):
        Objective.parse("wer:best")


def test_the_strictest_plain_fp32_job_is_the_reference():
    jobs = [job(0, "fp32", wer=0.12), job(1, "fp32", wer=0.10),
            job(2, "fp32", wer=0.05, params={"trt.strongly_typed": "True"}),
            job(3, "fp32", wer=0.04, params={"trt.layer_precisions": "Softmax:fp32"}),
            job(4, "fp32", wer=0.03, status="FAILED"), job(5, "fp16", wer=0.01)]
    ref = fp32_reference(jobs)
    assert ref is not None and ref.run_id == "run01"


def test_budget_is_reference_plus_points_inclusive():
    jobs = [job(0, "fp32", wer=0.10, p99=30), job(1, wer=0.105, p99=20),
            job(2, wer=0.1051, p99=10)]
    selection = select(jobs, Objective(), Constraints())
    assert selection.chosen is not None and selection.chosen.run_id == "run01"
    rejected = {v.candidate.run_id: v.reasons for v in selection.verdicts if not v.ok}
    assert rejected == {"run02": ("WER 10.51 % over the budget 10.50 %",)}


def test_ties_go_to_lower_wer_then_earlier_job():
    jobs = [job(0, "fp32", wer=0.10, p99=50), job(3, wer=0.102, p99=10),
            job(2, wer=0.101, p99=10), job(1, wer=0.101, p99=10)]
    order = [v.candidate.run_id for v in select(jobs, Objective(), Constraints()).verdicts]
    assert order == ["run01", "run02", "run03", "run00"]


def test_every_broken_rule_is_reported():
    bad = Candidate("run09", "bf16-9", "FINISHED", 9, {"wer": 0.5, "latency_p99_ms": math.nan},
                    {"trt.precision": "bf16"}, {"device": "gpu:0", "builder_version": "x"}, None)
    selection = select([job(0, "fp32"), bad], Objective(), Constraints())
    (verdict,) = [v for v in selection.verdicts if not v.ok]
    assert verdict.reasons == (
        "no latency_p99_ms metric", "device gpu:0 is not cpu:x86_64",
        "builder x is not emulate-1", "WER 50.00 % over the budget 10.50 %",
        "no engine artifact (tracking.log_engine=false?)")


def test_maximised_objective_and_absolute_budget():
    jobs = [job(0, "fp32", wer=0.10, p99=20), job(1, wer=0.2, p99=5), job(2, wer=0.3, p99=1)]
    selection = select(jobs, Objective("throughput_chunks_s", True), Constraints(max_wer=25))
    assert selection.chosen is not None and selection.chosen.run_id == "run01"
    assert selection.target.budget_reason == "WER ≤ 25.00 % (--max-wer)"


def test_without_a_reference_the_budget_and_target_must_be_given():
    jobs = [job(1, wer=0.2), job(2, wer=0.1)]
    with pytest.raises(PromoteError, match="no FINISHED fp32 reference"):
        select(jobs, Objective(), Constraints())
    with pytest.raises(PromoteError, match="--device and --builder-version"):
        select(jobs, Objective(), Constraints(max_wer=30))
    chosen = select(jobs, Objective(), Constraints(max_wer=30, device="cpu:x86_64",
                                                   builder_version="emulate-1")).chosen
    assert chosen is not None and chosen.run_id == "run02"  # same p99: the lower WER wins


def _ci(c: Candidate, **metrics: float) -> Candidate:
    return Candidate(c.run_id, c.label, c.status, c.job_num, {**c.metrics, **metrics},
                     c.params, c.tags, c.engine_artifact)


def test_overlapping_latency_ranges_are_indistinguishable_and_the_simpler_wins():
    """bf16 is 10 % faster on the number, but the ranges over repeats overlap: fp32 (no
    precision change) is chosen, and the decision says why."""
    jobs = [_ci(job(0, "fp32", wer=0.10, p99=22), latency_p99_ms_min=19, latency_p99_ms_max=24),
            _ci(job(1, "bf16", wer=0.10, p99=20), latency_p99_ms_min=18, latency_p99_ms_max=23)]
    selection = select(jobs, Objective(), Constraints())
    assert selection.chosen is not None and selection.chosen.run_id == "run00"
    assert {c.run_id for c in selection.indistinguishable} == {"run00", "run01"}
    assert selection.decision.startswith("indistinguishable")


def test_a_clear_latency_win_beats_the_simpler_flag_set():
    jobs = [_ci(job(0, "fp32", wer=0.10, p99=40), latency_p99_ms_min=38, latency_p99_ms_max=42),
            _ci(job(1, "bf16", wer=0.10, p99=20), latency_p99_ms_min=18, latency_p99_ms_max=23)]
    selection = select(jobs, Objective(), Constraints())
    assert selection.chosen is not None and selection.chosen.run_id == "run01"
    assert selection.indistinguishable == () and " wins: " in selection.decision


def test_simplicity_order():
    from sweep.promote.selection import simplicity

    pinned = job(0, "bf16", params={"trt.layer_precisions": "Softmax:fp32,LayerNormalization:fp32",
                                    "trt.precision_constraints": "obey"})
    assert simplicity(job(1, "fp32")) < simplicity(job(2, "fp16")) < simplicity(pinned)
    assert simplicity(job(3, "fp16", params={"trt.opt_level": "0"})) < simplicity(job(4, "fp16"))


def test_runs_of_two_datasets_are_refused():
    other = job(1)
    other = Candidate(other.run_id, other.label, other.status, other.job_num, other.metrics,
                      other.params, {**other.tags, "dataset": "b"}, other.engine_artifact)
    with pytest.raises(PromoteError, match="different datasets or model interfaces"):
        select([job(0, "fp32"), other], Objective(), Constraints())


def test_capacity_as_a_constraint_and_as_the_objective():
    jobs = [job(0, "fp32", wer=0.10, p99=30, streams_at_slo=40.0),
            job(1, wer=0.10, p99=20, streams_at_slo=24.0),
            job(2, wer=0.10, p99=25, streams_at_slo=64.0)]
    chosen = select(jobs, Objective(), Constraints(min_streams_at_slo=32)).chosen
    assert chosen is not None and chosen.run_id == "run02"
    rejected = {v.candidate.run_id: v.reasons
                for v in select(jobs, Objective(), Constraints(min_streams_at_slo=32)).verdicts
                if not v.ok}
    assert rejected["run01"] == ("streams_at_slo 24 below 32",)
    most = select(jobs, Objective.parse("streams_at_slo:max"), Constraints()).chosen
    assert most is not None and most.run_id == "run02"
