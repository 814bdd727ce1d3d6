"""The end of a multirun: the sweep's verdict (``sweep/verdict.py``) told in a table in the
terminal, a CSV, a Pareto plot and the runs' descriptions, all from the same verdict."""

from __future__ import annotations

import csv
import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep import units
from sweep.tracking import describe
from sweep.tracking import tags as tag
from sweep.tracking.records import JobRecord, sweep_records, utterance_errors
from sweep.tracking.store import Store, redact
from sweep.verdict import (
    Constraints,
    Judged,
    Objective,
    Row,
    decide_groups,
    format_delta,
    format_value,
    interval,
)

# Tags worth a CSV column: what identifies the engine and where it ran.
TAG_COLUMNS = (tag.FLAGS_DIGEST, tag.ENGINE_HASH, tag.ENGINE_SHA256, tag.DEVICE, tag.BUILDER,
               tag.BUILDER_VERSION, tag.ERROR)
# What an operator acts on, where the job measured it (paced runs, eval.capacity=true).
OPERATOR_COLUMNS = ("final_latency_p95_ms", "final_latency_p95_ms_min",
                    "final_latency_p95_ms_max", "streams_at_slo", "streams_at_slo_min",
                    "streams_at_slo_max", "admission_limit", "cost_per_audio_hour",
                    "triton_queue_ms", "triton_compute_infer_ms")
# The summary judges with promote's defaults: lowest p99, 0.5 points of WER over fp32.
OBJECTIVE = Objective()
RECOMMENDED = "→"
FRONT = "*"
REUSED = "↺"


def display_labels(records: list[JobRecord]) -> list[str]:
    """Flag-set labels, made unique: the label leaves out batch shapes, timing cache and
    extra flags, so two jobs may share one; the flag-set digest tells them apart."""
    counts = Counter(r.label for r in records)
    out = []
    for r in records:
        if counts[r.label] > 1:
            suffix = r.tags.get(tag.FLAGS_DIGEST, "")[:6] or f"job {r.params.get('job.num')}"
            out.append(f"{r.label} ({suffix})")
        else:
            out.append(r.label)
    return out


@dataclass(frozen=True)
class Line:
    """One job as the summary shows it: its verdict row and its display label."""

    row: Row
    label: str

    @property
    def record(self) -> JobRecord:
        return self.row.record

    @property
    def marks(self) -> str:
        return ((f" {RECOMMENDED}" if self.row.rank == 1 else "")
                + (f" {FRONT}" if self.row.on_front else "")
                + (f" {REUSED}" if self.row.reused else ""))


def lines(judged: Judged) -> list[Line]:
    """Every job in job order, labelled; the dataset and model appended when the sweep
    measured several."""
    rows = sorted((row for v in judged.verdicts for row in v.rows),
                  key=lambda row: (row.record.job_num, row.record.label, row.record.run_id))
    labels = display_labels([row.record for row in rows])
    if len(judged.verdicts) > 1:
        labels = [f"{label} [{row.record.group[0]}, {row.record.group[1]}]"
                  for label, row in zip(labels, rows, strict=True)]
    return [Line(row, label) for row, label in zip(rows, labels, strict=True)]


def _latency(record: JobRecord, metric: str = "latency_p99_ms") -> str:
    return format_value(record, metric).removesuffix(" ms").replace(" ms ", " ")


def make_console() -> Console:
    # Logs (CI, a sweep piped to a file) are not terminals; rich would assume 80 columns and
    # wrap every figure with its interval over three lines.
    console = Console()
    return console if console.is_terminal else Console(width=170)


def print_table(judged: Judged, console: Console | None = None) -> None:
    console = console or make_console()
    table = Table(title="trt-sweep results",
                  caption=f"WER in % with its 95 % bootstrap interval; ΔWER in points against "
                          f"the fp32 reference, paired interval; p99 in ms with its range over "
                          f"the eval.repeats passes. {RECOMMENDED} recommended, {FRONT} on the "
                          f"WER / p99 front judged with the intervals, {REUSED} measured in "
                          "another sweep")
    table.add_column("flag set", no_wrap=True)
    for name in ("WER %", "ΔWER pts", "p99 ms", "chunks/s", "build s"):
        table.add_column(name, justify="right")
    table.add_column("status")
    table.add_column("verdict")
    for line in lines(judged):
        r, row = line.record, line.row
        wer = " ".join(x for x in (units.percent_number(r.metric("wer")), units.interval_percent(
            r.metric("wer_ci_low"), r.metric("wer_ci_high"))) if x)
        words = row.status_word()
        style = {"recommended": "bold green", "not judged": "yellow",
                 "rejected": "red"}.get(words, "")
        table.add_row(escape(line.label + line.marks), wer, format_delta(row),
                      _latency(r) if r.metric("latency_p99_ms") is not None else "—",
                      _number(r, "throughput_chunks_s"), _number(r, "build_seconds"),
                      {"FINISHED": "[green]FINISHED[/]", "FAILED": "[red]FAILED[/]"}.get(
                          r.status, escape(r.status)),
                      f"[{style}]{escape(words)}[/]" if style else escape(words))
    console.print(table)
    for v in judged.verdicts:
        console.print(f"[bold]verdict:[/] {escape(v.sentence)}", soft_wrap=True)
        if v.decision:
            console.print(f"how: {escape(v.decision)}", soft_wrap=True)
    for line in lines(judged):
        if line.row.reasons and line.row.rank is None:
            console.print(f"[yellow]{escape(line.label)}[/]: {line.row.status_word()}: "
                          f"{escape('; '.join(line.row.reasons)[:400])}", soft_wrap=True)
        if line.record.measured is not None:
            console.print(f"{escape(line.label)} {REUSED if line.row.reused else ''}: "
                          f"{escape(line.record.measured.describe())}", soft_wrap=True)


def _number(r: JobRecord, metric: str) -> str:
    value = r.metric(metric)
    return "—" if value is None else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def write_csv(judged: Judged, path: Path) -> None:
    """Every job with the verdict's figures: percent and points as people read them, the
    raw fractions beside them for scripts."""
    all_lines = lines(judged)
    params = sorted({k for line in all_lines for k in line.record.params if k.startswith("trt.")})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "label", "status", "verdict", "reasons", "on_front",
                         "wer_pct", "wer_ci_low_pct", "wer_ci_high_pct", "delta_wer_pts",
                         "delta_ci_low_pts", "delta_ci_high_pts", "cer_pct",
                         "latency_p50_ms", "latency_p99_ms", "latency_p99_ms_min",
                         "latency_p99_ms_max", "throughput_chunks_s", "build_seconds",
                         *OPERATOR_COLUMNS,
                         "measured_in_run", "measured_at", "measured_in_another_sweep",
                         "wer", "cer", *TAG_COLUMNS, *params])
        for line in all_lines:
            r, row = line.record, line.row
            p99 = interval(r, "latency_p99_ms")
            m = r.measured
            writer.writerow([
                r.run_id, line.label, r.status, row.status_word(), "; ".join(row.reasons),
                row.on_front, _pct(r.metric("wer")), _pct(r.metric("wer_ci_low")),
                _pct(r.metric("wer_ci_high")), _pct(row.delta_wer),
                _pct(row.delta_ci[0] if row.delta_ci else None),
                _pct(row.delta_ci[1] if row.delta_ci else None), _pct(r.metric("cer")),
                r.get("latency_p50_ms"), r.get("latency_p99_ms"),
                p99[0] if p99 else "", p99[1] if p99 else "", r.get("throughput_chunks_s"),
                r.get("build_seconds"), *(r.metrics.get(c, "") for c in OPERATOR_COLUMNS),
                m.run_id if m else "",
                m.started.isoformat(timespec="seconds") if m else "", row.reused,
                r.get("wer"), r.get("cer"), *(r.tags.get(t, "") for t in TAG_COLUMNS),
                *(r.params.get(p, "") for p in params)])


def _pct(fraction: float | None) -> str:
    return "" if fraction is None or not math.isfinite(fraction) else f"{fraction * 100:.4f}"


def plot_pareto(judged: Judged, path: Path) -> bool:
    """The objective (p99) against WER for every judged job, each with its intervals as error
    bars, the front as judged with them, the recommended engine ringed; returns False when
    no job has both figures (nothing drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = OBJECTIVE.metric
    drawn = [line for line in lines(judged) if line.row.judged
             and line.record.metric("wer") is not None and line.record.metric(metric) is not None]
    if not drawn:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for on_front, colour, name in ((False, "tab:blue", "dominated beyond the noise"),
                                   (True, "tab:red", "on the front (judged with intervals)")):
        group = [line for line in drawn if line.row.on_front == on_front]
        if not group:
            continue
        xs = [line.record.get(metric) for line in group]
        ys = [line.record.get("wer") * 100 for line in group]
        xerr = [[x - (interval(line.record, metric) or (x, x))[0] for x, line in
                 zip(xs, group, strict=True)],
                [(interval(line.record, metric) or (x, x))[1] - x for x, line in
                 zip(xs, group, strict=True)]]
        yerr = [[y - (interval(line.record, "wer") or (y / 100, y / 100))[0] * 100
                 for y, line in zip(ys, group, strict=True)],
                [(interval(line.record, "wer") or (y / 100, y / 100))[1] * 100 - y
                 for y, line in zip(ys, group, strict=True)]]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", color=colour, ecolor=colour,
                    alpha=0.85, capsize=3, zorder=3, label=name)
    for line in drawn:
        x, y = line.record.get(metric), line.record.get("wer") * 100
        if line.row.rank == 1:
            ax.scatter([x], [y], s=260, facecolors="none", edgecolors="black", linewidths=2,
                       zorder=4, label=f"recommended: {line.label}")
        ax.annotate(line.label + (f" {REUSED}" if line.row.reused else ""), (x, y),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.legend(fontsize="small")
    ax.set_xlabel("p99 chunk latency, ms, pooled over the eval.repeats passes "
                  "(bars: range across passes; lower is better)", fontsize=8)
    ax.set_ylabel("WER, % (bars: 95 % bootstrap interval; lower is better)", fontsize=8)
    sentences = [v.sentence for v in judged.verdicts]
    ax.set_title("WER vs p99 latency per flag set\n" + _wrap(sentences[0] if sentences else "",
                                                              110), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])


def judge(client: Any, store: Store, parent_id: str) -> Judged | None:
    """The sweep's verdict as promote's defaults give it (None: the sweep has no job)."""
    records = sweep_records(client, store.experiment_id, parent_id)
    if not records:
        return None
    allow = client.get_run(parent_id).data.tags.get(tag.REUSE_ACROSS_SWEEPS) == "true"
    errors = {r.run_id: e for r in records if (e := utterance_errors(client, r)) is not None}
    return decide_groups(records, OBJECTIVE, Constraints(allow_reused=allow), errors)


def where(store: Store, parent_id: str, csv_path: Path | None) -> list[str]:
    """Where the results are: the parent run, the UI link that lands on the runs table,
    the CSV."""
    uri = store.uri
    if uri.startswith("sqlite:"):
        ui = (f"mlflow ui --backend-store-uri {uri} --port 5000, then "
              f"http://127.0.0.1:5000/#/experiments/{store.experiment_id}"
              "?workflowType=machine_learning")
    else:
        ui = (f"{redact(uri).rstrip('/')}/#/experiments/{store.experiment_id}"
              "?workflowType=machine_learning")
    out = [f"parent run {parent_id} (experiment {store.experiment_id})", f"UI: {ui}"]
    if csv_path is not None:
        out.append(f"CSV: {csv_path}")
    return out


def summarise(client: Any, store: Store, parent_id: str, sweep_dir: Path | None,
              console: Console | None = None) -> Judged | None:
    judged = judge(client, store, parent_id)
    if judged is None:
        return None
    console = console or make_console()
    print_table(judged, console)
    all_lines = lines(judged)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(sweep_dir) if sweep_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "sweep_results.csv"
        write_csv(judged, csv_path)
        client.log_artifact(parent_id, str(csv_path))
        if plot_pareto(judged, out / "pareto_wer_latency.png"):
            client.log_artifact(parent_id, str(out / "pareto_wer_latency.png"))
    failed = sum(line.record.status != "FINISHED" for line in all_lines)
    client.set_tag(parent_id, tag.NOTE, describe.sweep(judged.verdicts, len(all_lines), failed))
    for line in all_lines:
        # Each job's page says the verdict's words on it.
        client.set_tag(line.record.run_id, tag.NOTE, describe.job(line.record, line.row))
        client.set_tag(line.record.run_id, tag.VERDICT, describe.verdict_words(line.row))
    chosen = [v.chosen for v in judged.verdicts if v.chosen is not None]
    if len(judged.verdicts) == 1 and chosen:
        client.set_tag(parent_id, tag.RECOMMENDED, chosen[0].run_id)
        client.log_metric(parent_id, "recommended_wer", chosen[0].get("wer"))
    client.log_metric(parent_id, "jobs", len(all_lines))
    client.log_metric(parent_id, "jobs_failed", failed)
    for text in where(store, parent_id, csv_path if sweep_dir is not None else None):
        console.print(f"results: {escape(text)}", soft_wrap=True)
    return judged
