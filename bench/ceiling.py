"""streams_at_slo against this machine's ceiling, measured in one run, and where the rest
goes.

The ceiling: in-process ONNX Runtime, no serving at all, one one-thread session per core
(what the Triton instances run), each at the batch size that makes a chunk cheapest, all
at once. Its chunks per second times the chunk duration is the most real-time calls the
cores could carry if serving, batching and latency cost nothing.

Against it, in the same run: the served fp32 demo engine (the sweep's server settings),
the job's capacity search (``eval.capacity=true``: paced calls, p95 chunk latency from the
schedule within the SLO, none behind real time; ``--arrivals``), then one paced probe at
the capacity found with every process's CPU and Triton's statistics read around it. The
two cores' time at capacity splits into:

* model at the best batch: the useful work, what the ceiling spends per chunk;
* smaller batches: ONNX Runtime at the batch Triton formed costs more per chunk than at the
  best one (from the ceiling's own per-batch table);
* serving: CPU of the client, tritonserver and the python-backend stubs beyond the model's
  compute (gRPC or shared memory, (de)serialisation, the backend's round trip);
* other processes: the machine is shared; what others used during the probe;
* idle: what the cores left free. A latency SLO needs it: a queue whose server is busy
  all the time grows without bound, so p95 <= SLO holds only below full load.

Run: python -m bench.ceiling [--budget 120] [--probe-s 4] [--arrivals staggered]
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from bench.batching import feed, session
from bench.common import (
    OUT,
    CpuMeter,
    StatsProbe,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    publish,
    serving_label,
    serving_options,
    table,
    utterances,
)
from sweep.evaluate import arrivals as calls
from sweep.evaluate.capacity import CapacityBounds, measure
from sweep.evaluate.finals import final_summary
from sweep.evaluate.stream import GrpcStreamer
from sweep.server.local import LocalServer
from sweep.server.serve import serve

BATCHES = (1, 2, 4, 8, 16, 32)


def concurrent(path: Any, cores: int, batch: int, seconds: float) -> tuple[float, float]:
    """(wall, CPU) ms per chunk of each of ``cores`` one-thread sessions running at once:
    wall is what the cores deliver (others' load included), CPU what a chunk costs."""
    import threading

    lanes = [session(path) for _ in range(cores)]
    out: list[tuple[float, float]] = [(0.0, 0.0)] * cores
    gate = threading.Barrier(cores)

    def lane(k: int) -> None:
        inputs = feed(lanes[k], batch, np.random.default_rng(k))
        for _ in range(3):
            lanes[k].run(None, inputs)
        gate.wait()
        runs, t0, c0 = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - t0 < seconds:
            lanes[k].run(None, inputs)
            runs += 1
        n = runs * batch
        out[k] = (1000 * (time.perf_counter() - t0) / n, 1000 * (time.thread_time() - c0) / n)

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return float(np.mean([w for w, _ in out])), float(np.mean([c for _, c in out]))


def ort_per_batch(path: Any, cores: int, seconds: float, rounds: int
                  ) -> tuple[dict[int, float], dict[int, float]]:
    """(wall, CPU) ms per chunk by batch, each the best of ``rounds`` interleaved rounds
    (the least disturbed by others: a ceiling)."""
    wall: dict[int, float] = {}
    cpu: dict[int, float] = {}
    for _ in range(rounds):
        for b in BATCHES:
            w, c = concurrent(path, cores, b, seconds)
            wall[b], cpu[b] = min(wall.get(b, w), w), min(cpu.get(b, c), c)
    return wall, cpu


def cost_at(per_batch: dict[int, float], batch: float) -> float:
    """ms per chunk at a (mean) batch size, interpolated between the measured ones."""
    sizes = sorted(per_batch)
    return float(np.interp(batch, sizes, [per_batch[b] for b in sizes]))


def main() -> None:
    ap = bench_parser(__doc__, serving=True)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds for the search")
    ap.add_argument("--probe-s", type=float, default=4.0, help="audio seconds per probe")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--max-streams", type=int, default=256)
    ap.add_argument("--arrivals", choices=calls.ARRIVALS, default="staggered")
    ap.add_argument("--seconds", type=float, default=1.5,
                    help="ONNX Runtime seconds per batch size for the ceiling")
    ap.add_argument("--rounds", type=int, default=2,
                    help="interleaved rounds of the ceiling (the best is kept)")
    ap.add_argument("--limit", type=int, default=40, help="utterances of demo_test used")
    args = ap.parse_args()

    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances(args.limit)
    chunk_s = model.chunk_ms / 1000.0
    cores = os.cpu_count() or 1
    setup = serving_options(args)

    per_batch, cpu_per_batch = ort_per_batch(engine.path, cores, args.seconds, args.rounds)
    best = min(per_batch, key=lambda b: per_batch[b])
    ceiling_chunks = cores * 1000.0 / per_batch[best]
    ceiling = ceiling_chunks * chunk_s
    print(f"ceiling: batch {best}, {per_batch[best]:.2f} ms/chunk per core, "
          f"{ceiling_chunks:.0f} chunks/s = {ceiling:.0f} real-time streams", flush=True)

    bounds = CapacityBounds(slo_ms=args.slo_ms, max_streams=args.max_streams,
                            probe_s=args.probe_s, budget_s=args.budget,
                            retries=args.retries, arrivals=args.arrivals)
    with serve(model, engine, LocalServer(), OUT / "ceiling", setup) as served:
        url, name = served.endpoint.grpc_url, served.endpoint.model_name
        capacity = measure(model, url, name, utts, bounds)
        found = max(capacity.streams_at_slo, 1)
        low, high = capacity.interval()
        print(f"streams_at_slo {capacity.streams_at_slo} [{low}, {high}] "
              f"({capacity.stopped_by}, {capacity.seconds:.0f} s)", flush=True)
        # One paced probe at the capacity, measured from every side.
        meter = CpuMeter(str(served.repository.path))
        probe = StatsProbe(url, name)
        plan = calls.staggered(utts, found, args.probe_s, chunk_s)
        streamer = GrpcStreamer(model, url, name, streams=found, pacing="realtime")
        probe.since()
        cpu0 = meter.sample()
        run = streamer.run_playlists(utts, plan.playlists, starts=plan.starts)
        cpu = CpuMeter.delta(cpu0, meter.sample())
        stats = probe.since()
    wall = cpu["wall"]
    chunks = run.chunks
    ours = {k: cpu[k] for k in ("client", "tritonserver", "stub")}
    # CPU seconds (not wall): what the model's work costs whoever else runs.
    model_best = chunks * cpu_per_batch[best] / 1000.0
    model_formed = chunks * max(cost_at(cpu_per_batch, stats.mean_batch),
                                cpu_per_batch[best]) / 1000.0
    serving = sum(ours.values()) - model_formed
    other = max(cpu["other"], 0.0)
    idle = cores * wall - sum(ours.values()) - other
    split = {"model at the best batch": model_best,
             "smaller batches": model_formed - model_best,
             "serving (client, tritonserver, stubs beyond the model)": serving,
             "other processes": other, "idle (latency headroom)": idle}
    shares = {k: v / (cores * wall) for k, v in split.items()}
    finals = final_summary(run.phrase_timings())
    p95 = float(np.percentile(run.latencies_ms, 95))
    ratio = capacity.streams_at_slo / ceiling

    data = {"ceiling": {"per_batch_ms": per_batch, "cpu_per_batch_ms": cpu_per_batch,
                        "best_batch": best,
                        "chunks_s": ceiling_chunks, "streams": ceiling},
            "capacity": {"streams_at_slo": capacity.streams_at_slo, "interval": [low, high],
                         "stopped_by": capacity.stopped_by, "seconds": capacity.seconds,
                         "arrivals": args.arrivals,
                         "points": [p.__dict__ for p in capacity.points]},
            "probe": {"streams": found, "chunks": chunks, "wall_s": wall,
                      "cpu_s": ours, "other_s": other, "mean_batch": stats.mean_batch,
                      "queue_ms": stats.queue_ms, "compute_ms": stats.compute_ms,
                      "p95_ms": p95, **finals},
            "split": shares, "ratio": ratio, "cores": cores}
    rows = [[f"{b}", per_batch[b], cpu_per_batch[b], cores * 1000.0 / per_batch[b] * chunk_s]
            for b in BATCHES]
    md = ["## streams_at_slo against the machine's ceiling (bench/ceiling.py)\n", header, "",
          f"One run on this machine ({cores} cores, shared with other work: the figures move "
          "with its load). Ceiling: the fp32 emulated demo engine in ONNX Runtime, "
          f"{cores} one-thread sessions at once, {args.seconds:g} s per batch size, the best "
          f"of {args.rounds} interleaved rounds:\n",
          table(["batch", "wall ms per chunk (each core)", "CPU ms per chunk",
                 "real-time streams, all cores"], rows),
          "",
          f"Best batch {best}: {ceiling_chunks:.0f} chunks/s, x {chunk_s:g} s a chunk = "
          f"**{ceiling:.0f} real-time streams**.\n",
          f"Served ({serving_label(setup)}, local tritonserver, python backend), the job's "
          f"capacity search ({args.arrivals} arrivals, SLO p95 <= {args.slo_ms:g} ms from "
          f"the schedule, none behind real time, {args.probe_s:g} s probes, budget "
          f"{args.budget:g} s, stopped by {capacity.stopped_by}): **streams_at_slo "
          f"{capacity.streams_at_slo}** (interval over the probes [{low}, {high}]).\n",
          f"**streams_at_slo / ceiling = {ratio:.2f}** ({capacity.streams_at_slo} / "
          f"{ceiling:.0f}).\n",
          f"Where the rest goes, from one paced probe of {found} calls ({wall:.1f} s, "
          f"{chunks} chunks; Triton formed batches of {stats.mean_batch:.2f} on average, "
          f"queue {stats.queue_ms:.2f} ms and compute {stats.compute_ms:.2f} ms per request; "
          f"chunk p95 {p95:.1f} ms, final-transcript p95 "
          f"{finals.get('final_latency_p95_ms', float('nan')):.0f} ms), as shares of the "
          f"{cores} cores' time:\n",
          table(["where", "share of the cores"], [[k, v] for k, v in shares.items()]), "",
          "The model at the best batch is the ceiling's own work (its CPU per chunk), so its "
          "share is about streams_at_slo / ceiling where the ceiling ran undisturbed: "
          "everything else is what the served path adds, what others took, or what the "
          "cores left free."]
    publish("ceiling", "\n".join(md), data, write=args.write)


if __name__ == "__main__":
    main()
