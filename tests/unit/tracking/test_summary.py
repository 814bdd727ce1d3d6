"""The end-of-sweep summary on a real (SQLite) MLflow store: the table, the CSV, the Pareto
plot and the runs' descriptions all tell the verdict that promote tells."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from sweep.flags import FlagSet
from sweep.tracking import tags as tag
from sweep.tracking.records import sweep_records
from sweep.tracking.store import Store, open_store
from sweep.tracking.summary import display_labels, judge, summarise
from sweep.verdict import Constraints, Objective, decide


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/mlflow.db", "summary-test",
                      str(tmp_path / "artifacts"), tmp_path)


def _job(client: MlflowClient, store: Store, parent: str, num: int, flags: FlagSet,
         metrics: dict[str, float], status: str = "FINISHED", transcripts: str | None = None,
         **tags: str) -> str:
    run = client.create_run(store.experiment_id, run_name=flags.label, tags={
        tag.PARENT_RUN: parent, tag.KIND: "job", tag.FLAGS_DIGEST: flags.digest,
        tag.FLAGS: json.dumps(flags.as_dict()), tag.DEVICE: "cpu:x86_64",
        tag.BUILDER: "emulate", tag.BUILDER_VERSION: "emulate-1", tag.DATASET: "demo_tiny",
        tag.MODEL_NAME: "demo_monolithic", **tags}).info.run_id
    client.log_param(run, "job.num", str(num))
    for name, text in flags.params().items():
        client.log_param(run, name, text)
    for key, value in metrics.items():
        client.log_metric(run, key, value)
    if transcripts is not None:
        client.log_text(run, transcripts, "transcripts.csv")
    if status == "FINISHED":
        client.log_text(run, "engine", "engine/model.onnx")
    client.set_terminated(run, status)
    return str(run)


def _transcripts(wrong: int, total: int = 20) -> str:
    rows = ["id,duration,reference,hypothesis,chunks,latency_mean_ms"]
    for i in range(total):
        hyp = "один два три" if i >= wrong else "один два"
        rows.append(f"u{i:02d},1.0,один два три,{hyp},4,1.0")
    return "\n".join(rows) + "\n"


def _sweep(client: MlflowClient, store: Store) -> tuple[str, dict[str, str]]:
    parent = client.create_run(store.experiment_id, tags={tag.KIND: "sweep"}).info.run_id
    runs = {
        "o0": _job(client, store, parent, 0, FlagSet(opt_level=0), {
            "wer": 0.1, "wer_ci_low": 0.05, "wer_ci_high": 0.15, "latency_p99_ms": 138.3,
            "latency_p99_ms_min": 105.2, "latency_p99_ms_max": 148.3}, transcripts=_transcripts(6)),
        "o5": _job(client, store, parent, 1, FlagSet(opt_level=5), {
            "wer": 0.1, "wer_ci_low": 0.05, "wer_ci_high": 0.15, "latency_p99_ms": 131.5,
            "latency_p99_ms_min": 128.7, "latency_p99_ms_max": 167.1}, transcripts=_transcripts(6)),
        "slow": _job(client, store, parent, 2, FlagSet(precision="fp16"), {
            "wer": 0.1, "wer_ci_low": 0.05, "wer_ci_high": 0.15, "latency_p99_ms": 300.0,
            "latency_p99_ms_min": 290.0, "latency_p99_ms_max": 310.0}, transcripts=_transcripts(6)),
        "failed": _job(client, store, parent, 3, FlagSet(precision="bf16"), {}, status="FAILED",
                       **{tag.ERROR: "TensorRT rejects this"}),
    }
    return parent, runs


def test_table_csv_plot_and_descriptions_tell_promotes_verdict(store: Store, tmp_path: Path):
    client = MlflowClient(store.uri)
    parent, runs = _sweep(client, store)
    console = Console(record=True, width=220)
    judged = summarise(client, store, parent, tmp_path / "multirun", console)
    assert judged is not None
    # What promote decides on the same runs (its defaults), computed on its own.
    records = sweep_records(client, store.experiment_id, parent)
    promote = decide(records, Objective(), Constraints(),
                     {r.run_id: e for r in records if (e := judge_errors(client, r))})
    assert promote.chosen is not None and promote.chosen.run_id == runs["o0"]
    text = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    # The table: percent with intervals, the recommended row marked and named.
    assert "recommended" in lines["fp32-o0 → *"] and "10.00 [5.00, 15.00]" in lines["fp32-o0 → *"]
    assert "fp32-o5 *" in lines and "qualifies" in lines["fp32-o5 *"]
    assert "fp16-o3" in lines and "rejected" not in lines["fp16-o3"]  # dominated, qualifies
    assert "not judged" in lines["bf16-o3"]
    assert "verdict: Ship fp32-o0" in text and "TensorRT rejects this" in text
    assert f"parent run {parent}" in text and "?workflowType=machine_learning" in text
    # The CSV: the same verdict, percent and points.
    with open(tmp_path / "multirun" / "sweep_results.csv") as f:
        rows = {r["run_id"]: r for r in csv.DictReader(f)}
    assert rows[runs["o0"]]["verdict"] == "recommended"
    assert rows[runs["o5"]]["on_front"] == "True" and rows[runs["slow"]]["on_front"] == "False"
    assert rows[runs["o0"]]["wer_pct"] == "10.0000" and rows[runs["o0"]]["wer"] == "0.1"
    assert rows[runs["slow"]]["delta_wer_pts"] == "0.0000"
    assert rows[runs["failed"]]["verdict"] == "not judged"
    # The parent's description and each job's: the same sentence and words.
    parent_run = client.get_run(parent)
    assert judged.verdicts[0].sentence in parent_run.data.tags[tag.NOTE]
    assert parent_run.data.tags[tag.RECOMMENDED] == runs["o0"]
    note = client.get_run(runs["o0"]).data.tags[tag.NOTE]
    assert "WER 10.00 % [5.00, 15.00]" in note and "p99 138.3 ms [105.2, 148.3]" in note
    assert "**recommended**" in note and "CPU emulation" in note
    assert client.get_run(runs["slow"]).data.tags[tag.VERDICT] == "qualifies"
    files = {a.path for a in client.list_artifacts(parent)}
    assert {"sweep_results.csv", "pareto_wer_latency.png"} <= files
    metrics = parent_run.data.metrics
    assert metrics["jobs"] == 4 and metrics["jobs_failed"] == 1


def judge_errors(client: MlflowClient, record):
    from sweep.tracking.records import utterance_errors

    return utterance_errors(client, record)


def test_jobs_sort_by_number_and_duplicate_labels_are_told_apart(store: Store):
    client = MlflowClient(store.uri)
    parent = client.create_run(store.experiment_id, tags={tag.KIND: "sweep"}).info.run_id
    # Twelve jobs: job 10 and 11 must sort after job 2 (job.num is a string param).
    for num in range(12):
        _job(client, store, parent, num, FlagSet(precision="fp16", min_batch=1 + num % 2),
             {"wer": 0.1, "latency_p99_ms": 30.0 - num})
    records = sweep_records(client, store.experiment_id, parent)
    assert [r.job_num for r in records] == list(range(12))
    labels = display_labels(records)
    assert labels[0] != labels[1] and labels[0].startswith("fp16-o3 (")
    judged = judge(client, store, parent)
    assert judged is not None and judged.verdicts[0].chosen is None  # no fp32 reference
    assert "no FINISHED fp32 reference" in judged.verdicts[0].sentence


def test_a_resumed_job_reads_its_original_and_is_marked_only_across_sweeps(store: Store,
                                                                          tmp_path: Path):
    client = MlflowClient(store.uri)
    old_parent = client.create_run(store.experiment_id, tags={
        tag.KIND: "sweep", tag.SWEEP_KEY: "aaaa"}).info.run_id
    original = _job(client, store, old_parent, 0, FlagSet(), {"wer": 0.1,
                                                              "latency_p99_ms": 277.0},
                    transcripts=_transcripts(2), **{tag.SWEEP_KEY: "aaaa"})
    parent = client.create_run(store.experiment_id, tags={
        tag.KIND: "sweep", tag.SWEEP_KEY: "bbbb",
        tag.REUSE_ACROSS_SWEEPS: "true"}).info.run_id
    copy = client.create_run(store.experiment_id, run_name="fp32-o3", tags={
        tag.PARENT_RUN: parent, tag.KIND: "job", tag.RESUMED_FROM: original,
        tag.SWEEP_KEY: "bbbb", tag.DEVICE: "cpu:x86_64", tag.BUILDER_VERSION: "emulate-1",
        tag.DATASET: "demo_tiny", tag.MODEL_NAME: "demo_monolithic"}).info.run_id
    client.log_metric(copy, "wer", 0.1)
    client.log_metric(copy, "latency_p99_ms", 277.0)
    client.set_terminated(copy)
    (record,) = sweep_records(client, store.experiment_id, parent)
    assert record.artifact_run == original and record.engine_artifact == "engine/model.onnx"
    assert record.measured is not None and not record.measured.same_sweep
    console = Console(record=True, width=220)
    summarise(client, store, parent, tmp_path / "s", console)
    text = console.export_text()
    assert "↺" in text and f"run {original[:8]}" in text
    with open(tmp_path / "s" / "sweep_results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["measured_in_another_sweep"] == "True" and row["measured_in_run"] == original
    assert "measured in sweep" in client.get_run(copy).data.tags[tag.NOTE]
