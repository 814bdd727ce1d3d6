"""Time to the final transcript against chunk latency, for two flag sets, and Triton's
queue/compute split at 16 paced streams.

Each flag set's emulated demo engine is served on its own local tritonserver with the
sweep's server settings; rounds alternate between them. A round is one paced pass
(``eval.pacing=realtime``: chunk k of a call due at its start + k chunks, latency from
then) of ``--streams`` calls over ``--limit`` utterances of demo_test, as a job makes it,
with Triton's statistics read around it (sweep/evaluate/triton_stats.py). Per flag set:
chunk p95, final-transcript p95 (from the speech end to the final text,
sweep/evaluate/finals.py), partial-result p95, and queue / compute per request and the
mean batch; medians over the rounds with their range, and which flag set wins on each.

Run: python -m bench.latency [--repeat 3] [--streams 16] [--limit 32]
"""

from __future__ import annotations

import contextlib
import statistics
from typing import Any

import numpy as np

from bench.common import (
    OUT,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    other_cores,
    publish,
    serving_label,
    serving_options,
    table,
    utterances,
)
from sweep.evaluate.finals import final_summary
from sweep.evaluate.stream import GrpcStreamer
from sweep.evaluate.triton_stats import StatsWindow
from sweep.server.local import LocalServer
from sweep.server.serve import serve

FLAG_SETS: dict[str, dict[str, Any]] = {"fp32": {"precision": "fp32", "tf32": False},
                                        "fp16": {"precision": "fp16", "tf32": False}}
FIGURES = ("chunk_p95_ms", "final_p95_ms", "partial_p95_ms", "queue_ms", "compute_ms",
           "mean_batch")


def one_pass(model: Any, url: str, name: str, utts: list[Any], streams: int
             ) -> dict[str, float]:
    streamer = GrpcStreamer(model, url, name, streams=streams, pacing="realtime")
    with StatsWindow(url, name) as window:
        run = streamer.run(utts)
    stats = window.stats
    assert stats is not None
    finals = final_summary(run.phrase_timings())
    return {"chunk_p95_ms": float(np.percentile(run.latencies_ms, 95)),
            "final_p95_ms": finals["final_latency_p95_ms"],
            "partial_p95_ms": finals["partial_latency_p95_ms"],
            "queue_ms": stats.queue_ms, "compute_ms": stats.compute_ms,
            "compute_infer_ms": stats.compute_infer_ns / max(stats.requests, 1) / 1e6,
            "mean_batch": stats.mean_batch, "late": run.late_chunk_fraction,
            "other_cores": other_cores(0.5)}


def main() -> None:
    ap = bench_parser(__doc__, repeat=3, serving=True)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--limit", type=int, default=32, help="utterances of demo_test")
    args = ap.parse_args()
    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    utts = utterances(args.limit)
    setup = serving_options(args)
    engines = {label: fp32_engine(model, flags) for label, flags in FLAG_SETS.items()}
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label in engines}
    with contextlib.ExitStack() as stack:
        served = {label: stack.enter_context(serve(model, engine, LocalServer(),
                                                   OUT / f"latency-{label}", setup))
                  for label, engine in engines.items()}
        for s in served.values():  # warm-up: first runs of each batch size
            GrpcStreamer(model, s.endpoint.grpc_url, s.endpoint.model_name,
                         streams=args.streams).run(utts[:args.streams])
        for rnd in range(args.repeat):
            for label, s in served.items():
                row = one_pass(model, s.endpoint.grpc_url, s.endpoint.model_name, utts,
                               args.streams)
                rounds[label].append(row)
                print(f"round {rnd} {label}: " + ", ".join(f"{k} {v:.2f}"
                                                          for k, v in row.items()), flush=True)

    def med(label: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rounds[label]))

    def span(label: str, key: str) -> str:
        values = [r[key] for r in rounds[label]]
        return f"{min(values):.1f}-{max(values):.1f}"

    rows = [[label, *(f"{med(label, k):.1f} ({span(label, k)})" if k != "mean_batch"
                      else f"{med(label, k):.2f}" for k in FIGURES),
             f"{med(label, 'late'):.3f}", f"{med(label, 'other_cores'):.2f}"]
            for label in rounds]
    labels = list(rounds)

    def best(key: str) -> str:
        return min(labels, key=lambda label: med(label, key))

    wins = {k: best(k) for k in ("chunk_p95_ms", "final_p95_ms", "partial_p95_ms")}
    md = ["## Time to final transcript against chunk latency (bench/latency.py)\n", header,
          "",
          f"{args.streams} paced calls (`eval.pacing=realtime`) over {len(utts)} utterances "
          f"of demo_test per round, {args.repeat} rounds alternating between the flag sets "
          f"(emulated engines, {serving_label(setup)}, each on its own local tritonserver); "
          "medians with the rounds' range in brackets. final: from the speech end (energy "
          "rule) to the final text under T-one's splitter (600 ms of silence), "
          "docs/latency.md. queue / compute: Triton's statistics per request over the "
          "round.\n",
          table(["flag set", "chunk p95 ms", "final p95 ms", "partial p95 ms", "queue ms",
                 "compute ms", "mean batch", "late chunks", "others' cores"], rows), "",
          "Lower wins: chunk p95 " + wins["chunk_p95_ms"] + ", final-transcript p95 "
          + wins["final_p95_ms"] + ", partial p95 " + wins["partial_p95_ms"] + ". The final "
          "latency is the splitter's 600 ms, the rest of the chunk that holds its end (0 to "
          "400 ms, 200 on average) and that chunk's latency, so chunk-latency differences "
          "reach it diluted; where the ranges overlap the flag sets cannot be told apart "
          "on this shared machine."]
    publish("latency", "\n".join(md), {"rounds": rounds, "streams": args.streams,
                                       "utterances": len(utts)}, write=args.write)


if __name__ == "__main__":
    main()
