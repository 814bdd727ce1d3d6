"""Pictures for MLflow runs and reports (matplotlib, Agg backend: no display needed).

Each function takes data or a path to it and writes one PNG; logging it is the caller's
business (``sweep/tracking/runs.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # servers and CI have no display; must precede pyplot's import

import matplotlib.pyplot as plt
from matplotlib.patches import Patch

if TYPE_CHECKING:
    from sweep.evaluate.capacity import Capacity

# Colours chosen to read as "wide -> narrow"; pinned nodes share the colour, hatched.
PRECISION_COLOURS = {"fp32": "#4c72b0", "tf32": "#64b5cd", "fp16": "#dd8452", "bf16": "#55a868",
                     "int8": "#c44e52", "fp8": "#8172b3"}
_ORDER = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


def _records(source: str | Path | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(source, (str, Path)):
        return list(json.loads(Path(source).read_text(encoding="utf-8")))
    return list(source)


def plot_layer_precisions(source: str | Path | Iterable[Mapping[str, Any]],
                          out_png: str | Path, title: str | None = None) -> Path:
    """Per op type, a horizontal stacked bar of how many nodes store their outputs in each
    precision; pinned nodes (layer_precisions/layer_output_types) hatched.

    ``source``: ``layer_precisions.json`` written by the emulate builder, or its records
    (dicts with ``op_type``, ``stored`` and ``pinned``). Nodes without float outputs
    (``stored`` null: weights, integer ops) and the shape subgraph (``shape`` true) are
    left out: they are not layers whose precision a flag set chooses.
    """
    counts: dict[str, dict[tuple[str, bool], int]] = {}
    for r in _records(source):
        stored = r.get("stored")
        if not stored or r.get("shape"):
            continue
        key = (str(stored), bool(r.get("pinned")))
        per_op = counts.setdefault(str(r["op_type"]), {})
        per_op[key] = per_op.get(key, 0) + 1
    ops = sorted(counts, key=lambda op: (sum(counts[op].values()), op))
    precisions = [p for p in _ORDER if any(p == k[0] for c in counts.values() for k in c)]
    precisions += sorted({k[0] for c in counts.values() for k in c} - set(precisions))

    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.32 * len(ops) + 1.2)))
    left = [0] * len(ops)
    for precision in precisions:
        for pinned in (False, True):
            widths = [counts[op].get((precision, pinned), 0) for op in ops]
            if not any(widths):
                continue
            ax.barh(ops, widths, left=left, color=PRECISION_COLOURS.get(precision, "#8c8c8c"),
                    edgecolor="black" if pinned else "white", linewidth=0.6,
                    hatch="///" if pinned else None)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    handles = [Patch(facecolor=PRECISION_COLOURS.get(p, "#8c8c8c"), label=p) for p in precisions]
    if any(k[1] for c in counts.values() for k in c):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="pinned"))
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    ax.set_xlabel("nodes (by stored precision of their float outputs)")
    ax.set_title(title or "Stored precision per op type")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_latency(latencies_ms: Iterable[float], out_png: str | Path, title: str) -> Path:
    """Histogram of per-chunk client latency with p50/p99 marked: the tail is what a
    streaming user feels, and a mean hides it. The marks are ``latency_summary`` of the
    same values, the function the run's ``latency_p50_ms``/``latency_p99_ms`` come from, so
    the plot and the metrics agree when given the same (pooled) chunks."""
    import numpy as np

    from sweep.evaluate.metrics import latency_summary

    values = np.asarray(list(latencies_ms), dtype=float)
    marks = latency_summary(values)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(values, bins=60, color=PRECISION_COLOURS["fp32"], alpha=0.85)
    for q, style in ((50, "--"), (99, ":")):
        x = marks.get(f"latency_p{q}_ms", 0.0)
        ax.axvline(x, color="black", linestyle=style, label=f"latency_p{q}_ms {x:.1f}")
    ax.set_xlabel(f"per-chunk latency, ms (client side; {values.size} chunks)")
    ax.set_ylabel("chunks")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, out_png)


def save_figure(fig: Any, out_png: str | Path, dpi: int = 110) -> Path:
    """Lay out, write and close a figure (pyplot keeps every open one alive)."""
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_capacity(capacity: Capacity, out_png: str | Path, title: str) -> Path:
    """Latency at the SLO's percentile against paced streams, one dot per probe (filled:
    passed), the SLO as a line and streams_at_slo marked: the largest filled dot under the
    line is the engine's capacity; the curve's knee is where the server stops keeping up."""
    points = sorted(capacity.points, key=lambda p: p.streams)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = [p.streams for p in points]
    ys = [p.latency_ms for p in points]
    ax.plot(xs, ys, color="#4c72b0", linewidth=1, alpha=0.6)
    for p in points:
        ax.scatter([p.streams], [p.latency_ms], s=36, zorder=3,
                   color="#4c72b0" if p.passed else "white", edgecolors="#4c72b0",
                   label=None)
        if p.late_chunk_fraction > 0:
            ax.annotate(f"{100 * p.late_chunk_fraction:.0f}% late", (p.streams, p.latency_ms),
                        fontsize="x-small", xytext=(4, 4), textcoords="offset points")
    bounds = capacity.bounds
    ax.axhline(bounds.slo_ms, color="#c44e52", linestyle="--",
               label=f"SLO p{bounds.percentile:g} {bounds.slo_ms:g} ms")
    if capacity.streams_at_slo:
        ax.axvline(capacity.streams_at_slo, color="black", linestyle=":",
                   label=f"streams_at_slo {capacity.streams_at_slo}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("paced streams (real-time calls)")
    ax.set_ylabel(f"p{bounds.percentile:g} chunk latency from schedule, ms")
    ax.set_title(f"{title} (search {capacity.seconds:.0f} s, stopped: {capacity.stopped_by})",
                 fontsize="small")
    ax.legend(fontsize="small")
    return save_figure(fig, out_png)


# -- Triton's side of a job (appended; the statistics come from sweep/evaluate) ----------

if TYPE_CHECKING:
    from sweep.evaluate.triton_stats import ServerStats


def plot_server_time(latencies_ms: Iterable[float], stats: ServerStats, out_png: str | Path,
                     title: str) -> Path:
    """Beside the client's mean chunk latency, what Triton says a request spent (queue,
    compute input / infer / output; statistics API deltas over the measured window), and
    the batch sizes the dynamic batcher really executed: where the client's wait goes."""
    import numpy as np

    values = np.asarray(list(latencies_ms), dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6),
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    parts = (("queue", stats.queue_ns, "#c44e52"),
             ("compute input", stats.compute_input_ns, "#dd8452"),
             ("compute infer", stats.compute_infer_ns, "#4c72b0"),
             ("compute output", stats.compute_output_ns, "#64b5cd"))
    bottom = 0.0
    for label, ns, colour in parts:
        ms = ns / max(stats.requests, 1) / 1e6
        left.bar(["Triton"], [ms], bottom=[bottom], color=colour, label=f"{label} {ms:.2f}")
        bottom += ms
    client = float(values.mean()) if values.size else 0.0
    left.bar(["client"], [client], color="#8c8c8c", label=f"client mean {client:.2f}")
    left.set_ylabel("ms per request")
    left.legend(fontsize="x-small")
    sizes = sorted(stats.batches)
    right.bar([str(b) for b in sizes], [stats.batches[b] for b in sizes], color="#55a868")
    right.set_xlabel(f"executed batch size (mean {stats.mean_batch:.2f})")
    right.set_ylabel("executions")
    fig.suptitle(title, fontsize="small")
    return save_figure(fig, out_png)
