"""The end-of-sweep summary: table, CSV and Pareto plot, on a real (SQLite) MLflow store."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from sweep.tracking.store import Store, open_store
from sweep.tracking.summary import (
    JobRow,
    child_rows,
    display_labels,
    plot_pareto,
    print_table,
    summarise,
    write_csv,
)


def _row(num: int, label: str, status: str = "FINISHED", **metrics: float) -> JobRow:
    return JobRow(f"run{num:02d}", label, status, dict(metrics), {"job.num": str(num),
                                                                   "trt.precision": "fp16"},
                  {"flags_digest": f"{num}abcdef01234"[:12]})


ROWS = [
    _row(0, "fp32-o3", wer=0.10, cer=0.05, latency_p50_ms=5, latency_p99_ms=20,
         throughput_chunks_s=100, build_seconds=1),
    _row(1, "fp16-o3", wer=0.11, cer=0.06, latency_p50_ms=3, latency_p99_ms=10,
         throughput_chunks_s=200, build_seconds=2),
    _row(2, "fp16-o3", wer=0.12, cer=0.06, latency_p50_ms=4, latency_p99_ms=12,
         throughput_chunks_s=150, build_seconds=2),
    JobRow("run03", "typed-o3", "FAILED", {}, {"job.num": "3"},
           {"error": "trt.strongly_typed=true with trt.precision=fp16: TensorRT rejects"}),
]


def test_duplicate_labels_are_told_apart_by_digest():
    assert display_labels(ROWS) == ["fp32-o3", "fp16-o3 (1abcde)", "fp16-o3 (2abcde)",
                                    "typed-o3"]


def test_table_has_every_column_the_front_and_the_failure_reason():
    console = Console(record=True, width=200)
    print_table(ROWS, console)
    text = console.export_text()
    for header in ("flag set", "WER", "CER", "p50 ms", "p99 ms", "chunks/s", "build s",
                   "status"):
        assert header in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "0.1000" in lines["fp32-o3 *"] and "FINISHED" in lines["fp32-o3 *"]
    assert "fp16-o3 (1abcde) *" in lines and "fp16-o3 (2abcde)" in lines  # dominated
    assert "—" in lines["typed-o3"] and "FAILED" in lines["typed-o3"]
    assert "TensorRT rejects" in text  # why it failed, under the table


def test_csv_holds_all_jobs_with_tags_and_params(tmp_path: Path):
    path = tmp_path / "sweep_results.csv"
    write_csv(ROWS, path)
    with open(path) as f:
        records = list(csv.DictReader(f))
    assert [r["run_id"] for r in records] == ["run00", "run01", "run02", "run03"]
    assert records[0]["pareto"] == "True" and records[2]["pareto"] == "False"
    assert records[3]["status"] == "FAILED" and math.isnan(float(records[3]["wer"]))
    assert records[3]["error"].startswith("trt.strongly_typed")
    assert records[1]["trt.precision"] == "fp16" and records[1]["flags_digest"]


def test_plot_skips_jobs_without_figures(tmp_path: Path):
    out = tmp_path / "pareto.png"
    plot_pareto([(10.0, 0.1), (math.nan, 0.2), (5.0, 0.3)], ["a", "b", "c"], [0, 2], out)
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/mlflow.db", "summary-test",
                            str(tmp_path / "artifacts"), tmp_path)


def test_summarise_logs_csv_plot_and_counts_on_the_parent(store: Store, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    client = MlflowClient(store.uri)
    parent = client.create_run(store.experiment_id, tags={"trt-sweep.kind": "sweep"}).info.run_id
    # Twelve jobs: job 10 and 11 must sort after job 2 (job.num is a string param).
    for num in range(12):
        run = client.create_run(store.experiment_id, run_name=f"fp16-o{num % 6}",
                                tags={"mlflow.parentRunId": parent, "trt-sweep.kind": "job",
                                      "flags_digest": f"{num:012x}"}).info.run_id
        client.log_param(run, "job.num", str(num))
        if num == 7:
            client.set_tag(run, "error", "boom")
            client.set_terminated(run, "FAILED")
            continue
        for key, value in (("wer", 0.1 + num / 100), ("latency_p99_ms", 30.0 - num)):
            client.log_metric(run, key, value)
        client.set_terminated(run, "FINISHED")
    rows = child_rows(client, store, parent)
    assert [r.job_num for r in rows] == list(range(12))

    summarise(client, store, parent, tmp_path / "multirun")
    files = {a.path for a in client.list_artifacts(parent)}
    assert {"sweep_results.csv", "pareto_wer_latency.png"} <= files
    metrics = client.get_run(parent).data.metrics
    assert metrics["jobs"] == 12 and metrics["jobs_failed"] == 1
    assert metrics["best_wer"] == pytest.approx(0.1)
    assert "trt-sweep results" in capsys.readouterr().out


def test_pareto_front_keeps_only_undominated_points():
    from sweep.tracking.summary import pareto_front

    points = [(10, 0.2), (5, 0.3), (20, 0.1), (12, 0.25), (5, 0.35), (math.nan, 0.0)]
    assert sorted(pareto_front(points)) == [0, 1, 2]
