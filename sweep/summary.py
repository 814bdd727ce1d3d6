"""The end of a multirun: a table in the terminal, a CSV and a Pareto plot on the parent."""

from __future__ import annotations

import csv
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sweep import track

COLUMNS = ("wer", "cer", "latency_p50_ms", "latency_p99_ms", "throughput_chunks_s",
           "build_seconds")


@dataclass(frozen=True)
class JobRow:
    run_id: str
    label: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]

    def get(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


def child_rows(client: Any, store: track.Store, parent_id: str) -> list[JobRow]:
    runs = client.search_runs([store.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              max_results=5000)
    rows = [JobRow(r.info.run_id, r.info.run_name or r.info.run_id[:8], r.info.status,
                   dict(r.data.metrics), dict(r.data.params)) for r in runs]
    return sorted(rows, key=lambda row: row.params.get("job.num", row.label))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (lower is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            continue
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y)
                        for j, (x2, y2) in enumerate(points)
                        if j != i and not (math.isnan(x2) or math.isnan(y2)))
        if not dominated:
            front.append(i)
    return front


def plot_pareto(points: list[tuple[float, float]], labels: list[str], front: list[int],
                path: Path) -> None:
    """WER against p99 latency, every job labelled by its flag set, the front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs, ys = [p[0] for p in points], [p[1] * 100 for p in points]
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    for x, y, label in zip(xs, ys, labels, strict=True):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ordered = sorted(front, key=lambda i: xs[i])
    if ordered:
        ax.step([xs[i] for i in ordered], [ys[i] for i in ordered], where="post",
                color="tab:red", label="Pareto front", zorder=2)
        ax.legend()
    ax.set_xlabel("p99 chunk latency, ms")
    ax.set_ylabel("WER, %")
    ax.set_title("WER vs latency per flag set")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(rows: list[JobRow], console: Console | None = None) -> None:
    table = Table(title="trt-sweep results")
    for name in ("flag set", "status", "WER", "CER", "p50 ms", "p99 ms", "chunks/s",
                 "build s"):
        table.add_column(name, justify="left" if name in ("flag set", "status") else "right")
    for row in rows:
        values = [f"{row.get(c):.4f}" if c in ("wer", "cer") else f"{row.get(c):.1f}"
                  for c in COLUMNS]
        table.add_row(row.label, row.status, *values)
    (console or Console()).print(table)


def write_csv(rows: list[JobRow], path: Path) -> None:
    params = sorted({k for row in rows for k in row.params if k.startswith("trt.")})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "label", "status", *COLUMNS, *params])
        for row in rows:
            writer.writerow([row.run_id, row.label, row.status,
                             *(row.get(c) for c in COLUMNS),
                             *(row.params.get(p, "") for p in params)])


def summarise(client: Any, store: track.Store, parent_id: str, sweep_dir: Path | None) -> None:
    rows = child_rows(client, store, parent_id)
    if not rows:
        return
    print_table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(sweep_dir) if sweep_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, out / "sweep_results.csv")
        client.log_artifact(parent_id, str(out / "sweep_results.csv"))
        done = [r for r in rows if r.status == "FINISHED"]
        if done:
            points = [(r.get("latency_p99_ms"), r.get("wer")) for r in done]
            plot_pareto(points, [r.label for r in done], pareto_front(points),
                        out / "pareto_wer_latency.png")
            client.log_artifact(parent_id, str(out / "pareto_wer_latency.png"))
            best = min(done, key=lambda r: (r.get("wer"), r.get("latency_p99_ms")))
            client.log_metric(parent_id, "best_wer", best.get("wer"))
        client.log_metric(parent_id, "jobs", len(rows))
        client.log_metric(parent_id, "jobs_failed", sum(r.status == "FAILED" for r in rows))
