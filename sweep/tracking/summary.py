"""The end of a multirun: a table in the terminal, a CSV and a Pareto plot on the parent."""

from __future__ import annotations

import csv
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep.tracking import tags as tag
from sweep.tracking.store import Store

COLUMNS = ("wer", "cer", "latency_p50_ms", "latency_p99_ms", "throughput_chunks_s",
           "build_seconds")
HEADERS = ("WER", "CER", "p50 ms", "p99 ms", "chunks/s", "build s")
# Tags worth a CSV column: what identifies the engine and where it ran.
TAG_COLUMNS = ("flags_digest", "engine_hash", "engine_sha256", "device", "builder",
               "builder_version", "error")


@dataclass(frozen=True)
class JobRow:
    run_id: str
    label: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> float:
        return self.metrics.get(key, math.nan)

    @property
    def job_num(self) -> int:
        try:
            return int(self.params.get("job.num", ""))
        except ValueError:
            return 1 << 30  # a job without a number goes last, not first


def child_rows(client: Any, store: Store, parent_id: str) -> list[JobRow]:
    runs = client.search_runs([store.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              max_results=5000)
    # A run whose worker died and whose job Ray ran again is the retry's: counted once.
    rows = [JobRow(r.info.run_id, r.info.run_name or r.info.run_id[:8], r.info.status,
                   dict(r.data.metrics), dict(r.data.params), dict(r.data.tags)) for r in runs
            if tag.RETRIED_BY not in r.data.tags]
    # job.num is a string param: sort as a number, or job 10 would come before job 2.
    return sorted(rows, key=lambda row: (row.job_num, row.label, row.run_id))


def display_labels(rows: list[JobRow]) -> list[str]:
    """Flag-set labels, made unique: the label leaves out batch shapes, timing cache and
    extra flags, so two jobs may share one; the flag-set digest tells them apart."""
    counts = Counter(row.label for row in rows)
    out = []
    for row in rows:
        if counts[row.label] > 1:
            suffix = row.tags.get("flags_digest", "")[:6] or f"job {row.params.get('job.num')}"
            out.append(f"{row.label} ({suffix})")
        else:
            out.append(row.label)
    return out


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


def group_of(row: JobRow) -> tuple[str, str]:
    """What a job's figures are comparable within: its test set (name and digest of
    manifest + audio) and its model interface."""
    dataset = row.tags.get("dataset", "?")
    digest = row.tags.get("dataset_digest")
    return (f"{dataset} (#{digest})" if digest else dataset, row.tags.get("model", "?"))


def _front_of(rows: list[JobRow]) -> set[str]:
    """Run ids on the WER/p99 Pareto front among FINISHED jobs, one front per dataset and
    model interface: jobs measured on different test sets never dominate each other."""
    front: set[str] = set()
    done = [r for r in rows if r.status == "FINISHED"]
    for group in {group_of(r) for r in done}:
        members = [r for r in done if group_of(r) == group]
        points = [(r.get("latency_p99_ms"), r.get("wer")) for r in members]
        front |= {members[i].run_id for i in pareto_front(points)}
    return front


def _grouped_labels(rows: list[JobRow]) -> list[str]:
    """Flag-set labels, with the dataset and model appended when the sweep's FINISHED jobs
    mix them (a job that failed before loading its data has no digest: not a mix)."""
    labels = display_labels(rows)
    if len({group_of(r) for r in rows if r.status == "FINISHED"}) < 2:
        return labels
    return [f"{label} [{group_of(r)[0]}, {group_of(r)[1]}]" for label, r in zip(labels, rows,
                                                                               strict=True)]


def plot_pareto(points: list[tuple[float, float]], labels: list[str], front: list[int],
                path: Path) -> None:
    """WER against p99 latency, every job labelled by its flag set, the front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    on_front = set(front)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for group, colour, name in ((False, "tab:blue", "dominated"),
                                (True, "tab:red", "on the front")):
        idx = [i for i in keep if (i in on_front) == group]
        if idx:
            ax.scatter([points[i][0] for i in idx], [points[i][1] * 100 for i in idx],
                       color=colour, zorder=3, label=name)
    for i in keep:
        ax.annotate(labels[i], (points[i][0], points[i][1] * 100), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ordered = sorted((i for i in front if i in keep), key=lambda i: points[i][0])
    if ordered:
        # A staircase: between two front points the better WER is only bought with latency.
        ax.step([points[i][0] for i in ordered], [points[i][1] * 100 for i in ordered],
                where="post", color="tab:red", alpha=0.6, label="Pareto front", zorder=2)
    if keep:
        ax.legend(fontsize="small")
    ax.set_xlabel("p99 chunk latency, ms (lower is better)")
    ax.set_ylabel("WER, % (lower is better)")
    ax.set_title("WER vs latency per flag set")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(row: JobRow, column: str) -> str:
    value = row.get(column)
    if not math.isfinite(value):
        return "—"
    return f"{value:.4f}" if column in ("wer", "cer") else f"{value:.1f}"


def print_table(rows: list[JobRow], console: Console | None = None) -> None:
    front = _front_of(rows)
    table = Table(title="trt-sweep results",
                  caption="* on the WER / p99 latency Pareto front" if front else None)
    table.add_column("flag set", no_wrap=True)
    for name in HEADERS:
        table.add_column(name, justify="right")
    table.add_column("status")
    for row, label in zip(rows, _grouped_labels(rows), strict=True):
        status = {"FINISHED": "[green]FINISHED[/]", "FAILED": "[red]FAILED[/]"}.get(
            row.status, row.status)
        marker = " *" if row.run_id in front else ""
        table.add_row(escape(label) + marker, *(_cell(row, c) for c in COLUMNS), status)
    if console is None:
        # Logs (CI, a sweep piped to a file) are not terminals; rich would assume 80
        # columns and wrap every flag set over two lines.
        console = Console()
        console = console if console.is_terminal else Console(width=120)
    console.print(table)
    for row, label in zip(rows, display_labels(rows), strict=True):
        if row.status != "FINISHED" and row.tags.get("error"):
            console.print(f"[red]{escape(label)}[/]: {escape(row.tags['error'][:300])}")


def write_csv(rows: list[JobRow], path: Path) -> None:
    params = sorted({k for row in rows for k in row.params if k.startswith("trt.")})
    front = _front_of(rows)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "label", "status", *COLUMNS, "pareto", *TAG_COLUMNS,
                         *params])
        for row, label in zip(rows, display_labels(rows), strict=True):
            writer.writerow([row.run_id, label, row.status,
                             *(row.get(c) for c in COLUMNS), row.run_id in front,
                             *(row.tags.get(t, "") for t in TAG_COLUMNS),
                             *(row.params.get(p, "") for p in params)])


def summarise(client: Any, store: Store, parent_id: str, sweep_dir: Path | None) -> None:
    rows = child_rows(client, store, parent_id)
    if not rows:
        return
    print_table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(sweep_dir) if sweep_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(rows, out / "sweep_results.csv")
        client.log_artifact(parent_id, str(out / "sweep_results.csv"))
        labels = _grouped_labels(rows)
        done = [i for i, r in enumerate(rows) if r.status == "FINISHED"]
        if done:
            points = [(rows[i].get("latency_p99_ms"), rows[i].get("wer")) for i in done]
            front = _front_of(rows)
            plot_pareto(points, [labels[i] for i in done],
                        [k for k, i in enumerate(done) if rows[i].run_id in front],
                        out / "pareto_wer_latency.png")
            client.log_artifact(parent_id, str(out / "pareto_wer_latency.png"))
            scored = [rows[i] for i in done if math.isfinite(rows[i].get("wer"))]
            # best_wer only where the jobs are comparable (one dataset, one model)
            if scored and len({group_of(r) for r in scored}) == 1:
                best = min(scored, key=lambda r: (r.get("wer"), r.get("latency_p99_ms")))
                client.log_metric(parent_id, "best_wer", best.get("wer"))
        client.log_metric(parent_id, "jobs", len(rows))
        client.log_metric(parent_id, "jobs_failed", sum(r.status == "FAILED" for r in rows))
