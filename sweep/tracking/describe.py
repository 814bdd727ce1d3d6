"""What the MLflow UI shows first: each run's description (``mlflow.note.content``).

A job's says its figures with their uncertainty, its flag set, test set, builder and
device; once its sweep has ended, the verdict's words on it. The sweep's parent says the
verdict and its table. Markdown: the UI renders it on the run's page.
"""

from __future__ import annotations

from sweep import units
from sweep.tracking.records import JobRecord
from sweep.verdict import Row, Verdict, format_delta, format_value

EMULATION_NOTE = ("CPU emulation: latency is ONNX Runtime's on this host, not TensorRT's "
                  "on a GPU.")


def job(record: JobRecord, row: Row | None = None) -> str:
    """A job run's description: WER % [CI], ΔWER vs fp32 (once judged), p99 [spread],
    flag set, dataset, builder and device."""
    lines = [f"**{record.label}**: WER {format_value(record, 'wer')}, "
             f"CER {format_value(record, 'cer')}, "
             f"p99 {format_value(record, 'latency_p99_ms')}"
             + (f", {record.get('throughput_chunks_s'):.0f} chunks/s"
                if record.metric("throughput_chunks_s") is not None else "")]
    if record.emulated:  # beside the latency it qualifies, above the UI's "Show more"
        lines.append(EMULATION_NOTE)
    operator = [text for metric, text in (
        ("final_latency_p95_ms",
         f"final transcript p95 {format_value(record, 'final_latency_p95_ms')}"),
        ("streams_at_slo", f"streams_at_slo {format_value(record, 'streams_at_slo')}"),
        ("admission_limit", f"admission limit {record.get('admission_limit'):g}"),
        ("cost_per_audio_hour", f"{record.get('cost_per_audio_hour'):.4g} per audio hour"))
        if record.metric(metric) is not None]
    if operator:
        lines.append("; ".join(operator))
    if row is not None:
        lines.append(f"ΔWER against fp32: {format_delta(row)}; verdict: {verdict_words(row)}")
    if record.flags is not None:
        lines.append(f"flag set `{record.flags.digest}`: " + ", ".join(
            f"{k}={v}" for k, v in sorted(record.flags.params().items())
            if k in ("trt.precision", "trt.strongly_typed", "trt.opt_level", "trt.tf32",
                     "trt.layer_precisions", "trt.precision_constraints")))
    lines.append(f"dataset {record.group[0]}, model {record.model or '?'}; builder "
                 f"{record.builder_version or record.tags.get('builder', '?')} on "
                 f"{record.device or '?'}")
    if record.measured is not None:
        lines.append(f"Not run again: {record.measured.describe()}; its artifacts stay "
                     "there (+force=true measures it anew).")
    return "\n\n".join(lines)


def verdict_words(row: Row) -> str:
    if row.rank == 1:
        return "**recommended**"
    words = row.status_word()
    if row.on_front:
        words += ", on the front"
    if row.reasons:
        words += ": " + "; ".join(row.reasons)
    if row.reused:
        words += f" (marked: {row.record.measured.describe() if row.record.measured else ''})"
    return words


def sweep(verdicts: tuple[Verdict, ...], jobs: int, failed: int) -> str:
    """The parent run's description: the verdict first, then a table of every job."""
    parts = [f"**Verdict**: {v.sentence}" for v in verdicts]
    if any(r.record.emulated for v in verdicts for r in v.rows):
        parts.append(EMULATION_NOTE)
    parts.append(f"{jobs} jobs, {failed} not FINISHED.")
    for v in verdicts:
        if v.decision:
            parts.append(f"How: {v.decision}.")
        if v.target is not None:
            parts.append(f"Constraints: {v.target.budget_reason}; device {v.target.device}, "
                         f"builder {v.target.builder_version}.")
        rows = ["| flag set | WER % [95 % CI] | ΔWER pts [paired CI] | "
                f"{v.objective.metric} [range] | verdict |", "|---|---|---|---|---|"]
        for row in v.rows:
            r = row.record
            ci = units.interval_percent(r.metric("wer_ci_low"), r.metric("wer_ci_high"))
            rows.append(f"| {r.label} ({r.short_id}) | {units.percent_number(r.metric('wer'))}"
                        f" {ci} | {format_delta(row)} | {format_value(r, v.objective.metric)} | "
                        f"{verdict_words(row)} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
