"""Targets 1-3: evaluation throughput, the in-process limit, and the client's overhead.

One local Triton serves the fp32 emulated demo engine; the sweep's streaming client
(sweep.evaluate.stream.GrpcStreamer) streams the test set through it with 1, 4, 16 and 64
concurrent streams, interleaved over ``--repeat`` rounds (medians reported). Per run:
audio seconds per wall second, per-chunk latency p50/p99, Triton's statistics (batch
sizes formed, queue and compute time) and the CPU each process used per chunk.

1. throughput(16 streams) / throughput(1 stream)                         target >= 5
2. throughput(16 streams) / in-process ONNX Runtime replaying the batch sizes that Triton
   formed in that very run, with as many sessions and threads as the server's instances
   (no Triton, no gRPC, no python backend)                               target >= 0.70
3. client-observed mean chunk latency / Triton's queue + compute per request, 16 streams
                                                                         target <= 1.15

Run: python bench/throughput.py [--repeat 3] [--instances 1 --threads 1 ...]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CpuMeter,
    ServerSetup,
    StatsProbe,
    demo_model,
    fp32_engine,
    loadavg,
    machine_line,
    median,
    percentiles,
    save_json,
    table,
    triton,
    utterances,
    verdict,
    wait_quiet,
    write_section,
)


class OrtReplay:
    """In-process ONNX Runtime on the same engine file, as the server configures it:
    ``instances`` sessions with ``threads`` intra-op threads each, run side by side."""

    def __init__(self, model: Any, engine: Any, instances: int, threads: int,
                 utts: list[Any]) -> None:
        from sweep.evaluate.reference import OrtPipeline
        from sweep.evaluate.stream import chunk_inputs, initial_state

        level = str(engine.runtime.get("graph_optimization_level", "ORT_ENABLE_ALL"))
        self.pipelines = [OrtPipeline(model, engine.path, graph_optimization_level=level,
                                      threads=threads) for _ in range(instances)]
        self.chunk_s = model.chunk_ms / 1000.0
        # Real inputs: chunks of the test set with the states they really carry.
        from sweep.data.manifest import read_audio

        pipe = self.pipelines[0]
        chunks, states = [], []
        for utt in utts[:4]:
            state = initial_state(model, pipe.inputs)
            for chunk in chunk_inputs(model, read_audio(utt.audio_path)):
                chunks.append(chunk[model.audio_input])
                states.append(state["state"])
                out = pipe.infer(chunk | state)
                state = {"state": out["state_next"]}
        self.audio = np.concatenate(chunks)
        self.state = np.concatenate(states)
        self.model = model

    def feed(self, batch: int) -> dict[str, np.ndarray]:
        idx = np.arange(batch) % len(self.audio)
        return {self.model.audio_input: self.audio[idx], "state": self.state[idx]}

    def warm(self, sizes: list[int]) -> None:
        for p in self.pipelines:
            for b in sizes:
                p.infer(self.feed(b))

    def replay(self, batches: dict[int, int]) -> float:
        """Run every batch of the histogram once; return the wall seconds."""
        work = [b for b, n in sorted(batches.items(), reverse=True) for _ in range(n)]
        feeds = {b: self.feed(b) for b in batches}
        lanes: list[list[int]] = [[] for _ in self.pipelines]
        for i, b in enumerate(work):  # round robin: the scheduler's idle instance takes it
            lanes[i % len(lanes)].append(b)

        def lane(pipe: Any, sizes: list[int]) -> None:
            for b in sizes:
                pipe.infer(feeds[b])

        threads = [threading.Thread(target=lane, args=(p, s))
                   for p, s in zip(self.pipelines, lanes, strict=True)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    def throughput(self, batches: dict[int, int]) -> float:
        """Audio seconds per wall second for that batch histogram."""
        chunks = sum(b * n for b, n in batches.items())
        return chunks * self.chunk_s / self.replay(batches)


def ceiling(model: Any, engine: Any, utts: list[Any], batch: int, seconds: float = 3.0
            ) -> dict[str, float]:
    """In-process ONNX Runtime, no serving at all: batch 1 on one session (what one stream
    can at best reach) and ``batch`` on every core (what any number of streams can reach)."""
    import os

    cores = os.cpu_count() or 1
    out: dict[str, float] = {}
    for name, inst, thr, b in (("b1_1x1", 1, 1, 1), (f"b{batch}_{cores}x1", cores, 1, batch),
                               (f"b{batch}_1x{cores}", 1, cores, batch)):
        rep = OrtReplay(model, engine, inst, thr, utts[:1])
        rep.warm([b])
        n = 1
        while rep.replay({b: n * inst}) < seconds / 4:
            n *= 2
        out[name] = median([rep.throughput({b: n * inst}) for _ in range(3)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,4,16,64")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--utterances", type=int, default=None, help="default: all 200")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--queue-delay-us", type=int, default=1000)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--quiet-cores", type=float, default=0.3,
                    help="before each run, wait until other processes use fewer cores")
    ap.add_argument("--quiet-timeout", type=float, default=60.0,
                    help="seconds to wait for that at most (0: do not wait)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    from sweep.evaluate.stream import GrpcStreamer

    header = machine_line()
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances(args.utterances)
    streams = [int(s) for s in args.streams.split(",")]
    setup = ServerSetup(max_batch_size=args.max_batch, queue_delay_us=args.queue_delay_us,
                        instances=args.instances, intra_op_threads=args.threads)
    print(f"{header}\nserver: {setup.label}; {len(utts)} utterances, "
          f"{sum(u.duration for u in utts):.0f} s of audio", flush=True)
    replay = OrtReplay(model, engine, setup.instances, setup.intra_op_threads, utts)
    replay.warm(list(range(1, setup.max_batch_size + 1)))

    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in streams}
    with triton(model, engine, setup, "throughput") as endpoint:
        meter = CpuMeter(str(endpoint.log_path.parent / "model_repository"))
        probe = StatsProbe(endpoint.grpc_url)
        # Warm-up: every batch size gets its first (slow) ONNX Runtime run here.
        GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                     streams=16).run(utts[:32])
        probe.since()
        for rnd in range(args.repeat):
            for n in streams:
                wait_quiet(meter, args.quiet_cores, args.quiet_timeout)
                cpu0 = meter.sample()
                load0 = loadavg()
                run = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                                   streams=n).run(utts)
                cpu = CpuMeter.delta(cpu0, meter.sample())
                stats = probe.since()
                p50, p99, mean = percentiles(run.latencies_ms)
                row: dict[str, Any] = {
                    "round": rnd, "streams": n, "audio_s_per_s": run.audio_seconds /
                    run.wall_seconds, "wall_s": run.wall_seconds, "chunks": run.chunks,
                    "p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
                    "server_ms": stats.server_ms_per_request, "queue_ms": stats.queue_ms,
                    "compute_ms": stats.compute_ms, "mean_batch": stats.mean_batch,
                    "batches": stats.batches, "requests": stats.requests,
                    "cpu_ms_per_chunk": {k: 1000 * v / run.chunks for k, v in cpu.items()
                                         if k not in ("other", "wall")},
                    "other_cores": cpu["other"] / cpu["wall"], "load": load0,
                }
                if n == 16:
                    row["ort_limit"] = replay.throughput(stats.batches)
                runs[n].append(row)
                cpu_txt = " ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms_per_chunk"].items())
                print(f"round {rnd} streams {n:3d}: {row['audio_s_per_s']:6.1f} audio-s/s "
                      f"p50 {p50:6.1f} p99 {p99:6.1f} ms | server {row['server_ms']:6.1f} ms "
                      f"(queue {row['queue_ms']:.1f}) mean batch {row['mean_batch']:.1f} | "
                      f"cpu ms/chunk {cpu_txt} | others {row['other_cores']:.2f} cores"
                      + (f" | ORT limit {row['ort_limit']:.1f} audio-s/s" if n == 16 else ""),
                      flush=True)
    limits = ceiling(model, engine, utts, setup.max_batch_size)
    print("in-process ceilings (audio-s/s):", {k: round(v, 1) for k, v in limits.items()})

    def med(n: int, key: str) -> float:
        return median([r[key] for r in runs[n]])

    rows = []
    for n in streams:
        cpu = {k: median([r["cpu_ms_per_chunk"][k] for r in runs[n]])
               for k in runs[n][0]["cpu_ms_per_chunk"]}
        rows.append([n, med(n, "audio_s_per_s"), med(n, "audio_s_per_s") / med(1, "audio_s_per_s")
                     if 1 in runs else float("nan"), med(n, "p50_ms"), med(n, "p99_ms"),
                     med(n, "mean_ms"), med(n, "server_ms"), med(n, "queue_ms"),
                     med(n, "mean_batch"), cpu["client"], cpu["tritonserver"], cpu["stub"],
                     med(n, "other_cores")])
    result: dict[str, Any] = {"setup": setup.__dict__, "runs": runs, "ceilings": limits}
    checks = []
    if 1 in runs and 16 in runs:
        scale = med(16, "audio_s_per_s") / med(1, "audio_s_per_s")
        bound = max(limits[k] for k in limits if not k.startswith("b1_")) / med(1, "audio_s_per_s")
        checks.append(("1. 16 streams vs 1 stream, throughput", f"{scale:.2f}x", ">= 5x",
                       verdict(scale >= 5),
                       f"upper bound on this machine {bound:.2f}x (in-process ORT on every "
                       "core / Triton 1 stream)"))
        result["scaling_16_vs_1"] = scale
    if 16 in runs:
        ratio = median([r["audio_s_per_s"] / r["ort_limit"] for r in runs[16]])
        checks.append(("2. Triton 16 streams vs in-process ORT at the same batches",
                       f"{100 * ratio:.0f}%", ">= 70%", verdict(ratio >= 0.70),
                       f"ORT replay {med(16, 'ort_limit'):.1f} audio-s/s"))
        over = median([r["mean_ms"] / r["server_ms"] - 1 for r in runs[16]])
        checks.append(("3. client-observed latency over Triton's queue+compute, 16 streams",
                       f"+{100 * over:.0f}%", "<= +15%", verdict(over <= 0.15),
                       f"client mean {med(16, 'mean_ms'):.1f} ms, server "
                       f"{med(16, 'server_ms'):.1f} ms"))
        result["ort_ratio"], result["client_overhead"] = ratio, over
    save_json("throughput", result)
    md = ["## Evaluation throughput (bench/throughput.py)\n", header, "",
          f"Server: {setup.label} (fp32 emulated engine, python backend); "
          f"{len(utts)} utterances ({sum(u.duration for u in utts):.0f} s of audio) per run; "
          f"medians of {args.repeat} interleaved rounds.\n",
          table(["streams", "audio s / s", "x 1 stream", "p50 ms", "p99 ms", "mean ms",
                 "server ms", "queue ms", "mean batch", "client cpu ms/chunk",
                 "tritonserver cpu ms/chunk", "stub cpu ms/chunk", "others' cores"], rows),
          "",
          "\"others' cores\": CPU that processes other than this benchmark's used during the "
          "run (the machine is shared; 2.0 would mean all of it).", "",
          "In-process ONNX Runtime ceilings (audio s / s, no Triton): " +
          ", ".join(f"{k} {v:.1f}" for k, v in limits.items()) +
          " (bN_IxT: batch N on I sessions of T threads).", "",
          table(["target", "measured", "wanted", "verdict", "note"], [list(c) for c in checks])]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        write_section("throughput", text)


if __name__ == "__main__":
    main()
