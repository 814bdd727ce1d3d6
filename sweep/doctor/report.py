"""The doctor's output: a markdown report, a per-chunk divergence plot and a CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sweep.doctor.compare import ChunkDiff
from sweep.doctor.diagnosis import KL_FLOOR, Diagnosis, RunSummary

PLOT_NAME = "divergence.png"
CHUNKS_NAME = "chunks.csv"
REPORT_NAME = "report.md"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) >= 1e-3 else f"{value:.2e}"


def verdict_text(d: Diagnosis) -> str:
    base = d.baseline
    if d.verdict == "match":
        text = (f"**No difference that matters.** The served pipeline reproduces the reference: "
                f"max |Δ log-prob| {_num(base.comparison.logprob_max_abs)}, "
                f"{_pct(base.comparison.argmax_agreement)} of frames pick the same label, "
                f"{base.differing} of {len(d.utterances)} transcripts differ.")
        if base.comparison.kl > KL_FLOOR:
            text += (f" The small residual (mean KL {_num(base.comparison.kl)} nats/frame) is "
                     "not reproduced by any known cause: the engine's or front end's own "
                     "arithmetic.")
        return text
    if d.verdict == "unexplained":
        return ("**Unexplained.** The served output differs from the reference (mean KL "
                f"{_num(base.comparison.kl)} nats/frame, {base.differing} of "
                f"{len(d.utterances)} transcripts differ) and none of the seed's known causes "
                "reproduces it. Look at the engine itself (precision flags, a different "
                "export) or the server's own preprocessing implementation.")
    if d.verdict.startswith("chunk duration"):
        return ("**Chunk duration.** " + " ".join(d.notes))
    best = d.best
    assert best is not None
    lines = []
    for i, run in enumerate(d.chain):
        cause = run.cause.key.split("+")[-1]
        step = [c for c in d.tried if c.cause.key == cause]
        title = step[0].cause.title if step else run.cause.title
        lines.append(f"{i + 1}. **{title}**: the reference reproduces the served output "
                     f"with {run.cause.change.split('; ')[-1]}.")
    wer = d.wer_gap_explained(best)
    gap = d.served_wer_truth - base.wer_truth
    who = "Together they explain" if len(d.chain) > 1 else "It explains"
    transcripts = (f"{base.differing - best.differing} of {base.differing} differing transcripts"
                   if base.differing else "no transcript differed")
    summary = (f"{who} {_pct(d.explained(best))} of the log-prob divergence "
               f"(mean KL {_num(base.comparison.kl)} -> {_num(best.comparison.kl)} nats/frame); "
               f"{transcripts}"
               + (f"; {_pct(wer)} of the WER gap ({100 * gap:+.2f} points)"
                  if wer is not None else "") + ".")
    head = ("**Cause found.**" if d.verdict == "explained" else
            "**Partly explained.** A residual remains that none of the known causes "
            "reproduces (engine numerics?).")
    return "\n".join([head, "", *lines, "", summary])


def _row(d: Diagnosis, run: RunSummary) -> str:
    c = run.comparison
    wer = d.wer_gap_explained(run)
    return (f"| {run.cause.title} | {run.cause.change} | {_num(c.kl)} | "
            f"{_num(c.logprob_mean_abs)} | {_num(c.logprob_max_abs)} | "
            f"{_pct(c.argmax_agreement)} | {_num(c.feature_max_abs)} | "
            f"{run.differing}/{len(d.utterances)} | {_pct(run.transcript_wer)} | "
            f"{_pct(run.wer_truth)} | {_pct(d.explained(run))} | {_pct(wer)} |")


def markdown(d: Diagnosis, plot_name: str | None = PLOT_NAME) -> str:
    base = d.baseline
    c = base.comparison
    ref = d.reference
    lines = [
        "# Parity doctor",
        "",
        f"- served: {d.target}, {d.served_chunk_ms} ms chunks; client: {d.client.describe()}",
        f"- reference: `{ref.onnx_path}` in-process ONNX Runtime, fp32, {ref.contract}, "
        f"{ref.chunk_ms} ms chunks, left context {ref.left_context_samples} samples, "
        f"scale {ref.scale:g}",
        f"- {len(d.utterances)} utterance(s): {', '.join(u.id for u in d.utterances)}; "
        f"decoder {d.decoder.name}",
    ]
    if d.short_utterances:
        lines.append(f"- skipped, shorter than one chunk: {', '.join(d.short_utterances)}")
    lines += ["", "## Verdict", "", verdict_text(d), ""]
    if d.notes and not d.verdict.startswith("chunk duration"):
        lines += [*(f"> {n}" for n in d.notes), ""]
    lines += [
        "## Served vs reference",
        "",
        "| measure | value |",
        "|---|---|",
        f"| features max / mean abs diff | "
        f"{_num(c.feature_max_abs)} / {_num(c.feature_mean_abs)} |"
        if c.feature_max_abs is not None else
        "| features | n/a (computed inside the model graph, or no preprocessing step to call) |",
        f"| log-prob max / mean abs diff | {_num(c.logprob_max_abs)} / "
        f"{_num(c.logprob_mean_abs)} |",
        f"| mean KL(served ‖ reference), nats/frame | {_num(c.kl)} |",
        f"| argmax agreement ({c.frames} frames) | {_pct(c.argmax_agreement)} |",
        f"| transcripts that differ | {base.differing} of {len(d.utterances)} |",
        f"| WER served vs reference transcripts | {_pct(base.transcript_wer)} |",
        f"| WER served vs ground truth | {_pct(d.served_wer_truth)} |",
        f"| WER reference vs ground truth | {_pct(base.wer_truth)} |",
    ]
    if c.frame_count_mismatch:
        lines.append(f"| frame counts that differ | {', '.join(c.frame_count_mismatch)} |")
    lines += ["", "## Causes tried, one at a time", "",
              "Each row re-runs the reference with one of the seed's known causes injected "
              "and measures it against the served output: the cause the server reproduces "
              "brings KL to ~0 and the transcripts into agreement.", "",
              "| cause | reference run with | KL | mean abs | max abs | argmax agree | "
              "features max abs | transcripts differ | WER vs served | WER vs truth | "
              "explains divergence | explains WER gap |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|",
              _row(d, base),
              *(_row(d, r) for r in sorted(d.tried, key=lambda r: r.comparison.kl))]
    if len(d.chain) > 1:
        lines += ["", "Stacked:", "", _row(d, d.chain[-1])]
    if d.not_applicable:
        lines += ["", "Not tried:", ""]
        lines += [f"- {key.replace('_', ' ')}: {why}" for key, why in d.not_applicable.items()]
    lines += ["", "## Per-chunk divergence", ""]
    if plot_name:
        lines += [f"![per-chunk divergence]({plot_name})", ""]
    lines += _chunk_table(d)
    lines += ["", "## Transcripts", "", "| utterance | served | reference |", "|---|---|---|"]
    for u, s, r in zip(d.utterances, d.served_transcripts, base.transcripts, strict=True):
        mark = "" if s == r else " ≠"
        lines.append(f"| {u.id}{mark} | {s} | {r} |")
    return "\n".join(lines) + "\n"


def _chunk_table(d: Diagnosis, limit: int = 12) -> list[str]:
    """The first utterance's chunks, served vs reference and vs the best explanation."""
    first = d.utterances[0].id
    base = [c for c in d.baseline.comparison.chunks if c.utterance_id == first]
    best = d.best
    alt = {c.index: c for c in best.comparison.chunks if c.utterance_id == first} \
        if best else {}
    head = ["| chunk | start s | features max abs | log-prob max abs | KL | argmax agree |"
            + (" KL vs best cause |" if best else ""),
            "|---|---|---|---|---|---|" + ("---|" if best else "")]
    rows = []
    for c in base[:limit]:
        extra = f" {_num(alt[c.index].kl)} |" if best and c.index in alt else \
            (" |" if best else "")
        rows.append(f"| {c.index} | {c.start_s:.1f} | {_num(c.feature_max_abs)} | "
                    f"{_num(c.logprob_max_abs)} | {_num(c.kl)} | {_pct(c.argmax_agreement)} |"
                    + extra)
    more = [f"| … {len(base) - limit} more |"] if len(base) > limit else []
    return [f"Utterance {first}:", "", *head, *rows, *more]


def plot(d: Diagnosis, path: Path, max_utterances: int = 6) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_features = d.baseline.comparison.feature_max_abs is not None
    rows = 3 if has_features else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.6 * rows), sharex=True)
    ids = [u.id for u in d.utterances[:max_utterances]]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    floor = 1e-12

    def series(chunks: list[ChunkDiff], uid: str, attr: str) -> tuple[list[float], list[float]]:
        cs = [c for c in chunks if c.utterance_id == uid]
        return [c.start_s for c in cs], [max(float(getattr(c, attr) or 0.0), floor) for c in cs]

    panels = ([("feature_max_abs", "features\nmax |Δ|")] if has_features else []) + [
        ("logprob_max_abs", "log-probs\nmax |Δ|"), ("kl", "KL served‖ref\nnats/frame")]
    best = d.best
    for ax, (attr, label) in zip(axes, panels, strict=True):
        for k, uid in enumerate(ids):
            x, y = series(d.baseline.comparison.chunks, uid, attr)
            ax.plot(x, y, "-o", ms=3, color=colors[k % len(colors)], label=uid)
            if best is not None:
                x, y = series(best.comparison.chunks, uid, attr)
                ax.plot(x, y, "--", lw=1, color=colors[k % len(colors)])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("chunk start in the padded stream (s); exact zeros drawn at 1e-12")
    title = "served vs reference (solid)"
    if best is not None:
        title += f"; vs reference with {best.cause.title} (dashed)"
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chunks_csv(d: Diagnosis, path: Path) -> Path:
    runs = [d.baseline, *d.tried, *d.chain[1:]]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "utterance", "chunk", "start_s", "frames", "feature_max_abs",
                    "feature_mean_abs", "logprob_max_abs", "logprob_mean_abs", "kl",
                    "argmax_agreement"])
        for run in runs:
            for c in run.comparison.chunks:
                w.writerow([run.cause.key + ("" if run.cause.key == "none" else
                                             f" ({run.cause.change})"),
                            c.utterance_id, c.index, f"{c.start_s:.3f}", c.frames,
                            "" if c.feature_max_abs is None else f"{c.feature_max_abs:.6g}",
                            "" if c.feature_mean_abs is None else f"{c.feature_mean_abs:.6g}",
                            f"{c.logprob_max_abs:.6g}", f"{c.logprob_mean_abs:.6g}",
                            f"{c.kl:.6g}", f"{c.argmax_agreement:.4f}"])
    return path


def metrics(d: Diagnosis) -> dict[str, float]:
    """Flat numbers for MLflow."""
    c = d.baseline.comparison
    out = {"kl": c.kl, "logprob_max_abs": c.logprob_max_abs,
           "logprob_mean_abs": c.logprob_mean_abs, "argmax_agreement": c.argmax_agreement,
           "transcripts_differing": float(d.baseline.differing),
           "wer_served_vs_reference": d.baseline.transcript_wer,
           "wer_served": d.served_wer_truth, "wer_reference": d.baseline.wer_truth,
           "utterances": float(len(d.utterances)), "match": float(d.verdict == "match")}
    if c.feature_max_abs is not None:
        out["feature_max_abs"] = c.feature_max_abs
        out["feature_mean_abs"] = c.feature_mean_abs or 0.0
    seen: dict[str, int] = {}
    for run in d.tried:
        n = seen.get(run.cause.key, 0)
        seen[run.cause.key] = n + 1
        key = run.cause.key + (f"_{n + 1}" if n else "")
        out[f"cause.{key}.kl"] = run.comparison.kl
        out[f"cause.{key}.explained"] = d.explained(run)
        out[f"cause.{key}.transcripts_differing"] = float(run.differing)
    if d.best is not None:
        out["explained"] = d.explained(d.best)
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}
