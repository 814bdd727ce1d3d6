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

Run: python -m bench.throughput [--repeat 3] [--instances 1 --threads 1 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from typing import Any

import numpy as np

from bench.common import (
    OUT,
    CpuMeter,
    StatsProbe,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    median,
    percentiles,
    save_json,
    serving_label,
    serving_options,
    table,
    utterances,
    verdict,
    wait_quiet,
    write_section,
)
from sweep.server.local import LocalServer
from sweep.server.serve import serve


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

    def throughput(self, batches: dict[int, int], audio_per_chunk: float) -> float:
        """Audio seconds per wall second for that batch histogram, a chunk credited with
        ``audio_per_chunk`` of the test set's audio as the streamer's chunks are: less
        than its length, since utterances are padded with silence and their last chunk
        zero-filled. Otherwise replay and Triton would not be compared on the same work."""
        chunks = sum(b * n for b, n in batches.items())
        return chunks * audio_per_chunk / self.replay(batches)


def replay_cpu_ms(row: dict[str, Any], cores: int, audio_per_chunk: float) -> float:
    """The replay's CPU ms per chunk in a run's row: it keeps every core busy."""
    return 1000 * cores * audio_per_chunk / row["ort_limit"]


def ceiling(model: Any, engine: Any, utts: list[Any], batch: int, per_chunk: float,
            seconds: float = 3.0) -> dict[str, float]:
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
        out[name] = median([rep.throughput({b: n * inst}, per_chunk) for _ in range(3)])
    return out


def targets(runs: dict[tuple[str, int], list[dict[str, Any]]], limits: dict[str, float],
            setup: dict[str, Any], main_t: str, base_t: str, cores: int,
            per_chunk: float) -> tuple[list[tuple[str, str, str, str, str]], dict[str, float]]:
    """Targets 1-3 (and the transport's gain) from the runs: (target, measured, wanted,
    verdict, note) rows, and the figures themselves."""
    def med(key: tuple[str, int], field: str) -> float:
        return median([r[field] for r in runs[key]])

    def cpu(key: tuple[str, int], part: str) -> float:
        return median([r["cpu_ms_per_chunk"][part] for r in runs[key]])

    checks: list[tuple[str, str, str, str, str]] = []
    extra: dict[str, float] = {}
    key1, key16 = (main_t, 1), (main_t, 16)
    if key1 not in runs or key16 not in runs:
        return checks, extra
    used = runs[key16][0]["transport"]
    base1 = med(key1, "audio_s_per_s")
    scale = med(key16, "audio_s_per_s") / base1
    serving_free = max(v for k, v in limits.items() if not k.startswith("b1_")) / base1
    cpu_bound = cores / cpu(key16, "total") * per_chunk * 1000 / base1
    stub_bound = setup["instances"] / cpu(key16, "stub") * per_chunk * 1000 / base1
    checks.append((
        "1. 16 streams vs 1 stream, throughput", f"{scale:.2f}x", ">= 5x", verdict(scale >= 5),
        f"upper bound here {min(cpu_bound, stub_bound, serving_free):.2f}x: CPU "
        f"{cpu_bound:.2f}x ({cores} cores / {cpu(key16, 'total'):.2f} CPU ms per chunk), "
        f"stubs {stub_bound:.2f}x ({setup['instances']} at {cpu(key16, 'stub'):.2f} ms per "
        f"chunk), serving free {serving_free:.2f}x (ONNX Runtime alone, batch 16, every core)"))
    ratios = [r["audio_s_per_s"] / r["ort_limit"] for r in runs[key16]]
    ratio = median(ratios)
    replay_ms = median([replay_cpu_ms(r, cores, per_chunk) for r in runs[key16]])
    path_ms = cpu(key16, "total")
    checks.append(("2. Triton 16 streams vs in-process ORT at the same batches",
                   f"{100 * ratio:.0f}%", ">= 70%", verdict(ratio >= 0.70),
                   f"ORT replay {med(key16, 'ort_limit'):.1f} audio-s/s with "
                   f"{setup['instances']} session(s) x {setup['intra_op_threads']} thread(s): "
                   f"{replay_ms:.2f} CPU ms per chunk, the Triton path "
                   f"{path_ms:.2f} (bound {100 * replay_ms / path_ms:.0f}%); rounds "
                   f"{100 * min(ratios):.0f}-{100 * max(ratios):.0f}%"))
    over = median([r["mean_ms"] / r["server_ms"] - 1 for r in runs[key16]])
    checks.append(("3. client-observed latency over Triton's queue+compute, 16 streams",
                   f"+{100 * over:.0f}%", "<= +15%", verdict(over <= 0.15),
                   f"client mean {med(key16, 'mean_ms'):.1f} ms, server "
                   f"{med(key16, 'server_ms'):.1f} ms"))
    extra.update(scaling_16_vs_1=scale, ort_ratio=ratio, client_overhead=over,
                 replay_cpu_ms_per_chunk=replay_ms,
                 bound_16_vs_1=min(cpu_bound, stub_bound, serving_free))
    if base_t != "none" and (base_t, 16) in runs and base_t != main_t:
        gain = med(key16, "audio_s_per_s") / med((base_t, 16), "audio_s_per_s")
        cpu_gain = cpu((base_t, 16), "total") / cpu(key16, "total")
        extra["transport_gain"] = gain
        checks.append((f"(transport) 16 streams, {used} vs {base_t}", f"{gain:.2f}x",
                       "", "", f"CPU per chunk {cpu((base_t, 16), 'total'):.2f} -> "
                       f"{cpu(key16, 'total'):.2f} ms ({cpu_gain:.2f}x less)"))
    return checks, extra


def measure(streamer: Any, utts: list[Any], meter: CpuMeter, probe: StatsProbe,
            args: argparse.Namespace) -> dict[str, Any]:
    """One evaluation pass and what it cost."""
    wait_quiet(meter, args.quiet_cores, args.quiet_timeout)
    probe.since()
    cpu0 = meter.sample()
    run = streamer.run(utts)
    cpu = CpuMeter.delta(cpu0, meter.sample())
    stats = probe.since()
    p50, p99, mean = percentiles(run.latencies_ms)
    per_chunk = {k: 1000 * v / run.chunks for k, v in cpu.items() if k not in ("other", "wall")}
    per_chunk["total"] = sum(per_chunk.values())
    return {"streams": streamer.streams, "transport": streamer.used_transport,
            "audio_s_per_s": run.audio_seconds / run.wall_seconds, "wall_s": run.wall_seconds,
            "audio_per_chunk": run.audio_seconds / run.chunks,
            "chunks": run.chunks, "p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
            "server_ms": stats.server_ms_per_request, "queue_ms": stats.queue_ms,
            "compute_ms": stats.compute_ms, "mean_batch": stats.mean_batch,
            # Triton's wall time per execution (compute_infer by batch size) shared out over
            # its chunks: what one instance spends on a chunk, stub round trip included.
            "infer_ms_per_chunk": sum(stats.batch_infer_ns.values()) / 1e6
            / max(sum(b * n for b, n in stats.batches.items()), 1),
            "batches": stats.batches, "requests": stats.requests,
            "cpu_ms_per_chunk": per_chunk, "other_cores": cpu["other"] / cpu["wall"]}


def main() -> None:
    # Server settings: the sweep's own (ServingOptions), so that the bench measures what runs.
    ap = bench_parser(__doc__, repeat=3, quiet_timeout=60.0, serving=True)
    ap.add_argument("--streams", default="1,4,16,64")
    ap.add_argument("--utterances", type=int, default=None, help="default: all 200")
    ap.add_argument("--section", default="throughput",
                    help="RESULTS.md section to write (to keep runs of several settings)")
    ap.add_argument("--transport", default="auto", choices=("auto", "shm", "grpc"),
                    help="the client's transport for the measured runs")
    ap.add_argument("--baseline-transport", default="grpc",
                    help="also run 1 and 16 streams with this transport each round "
                         "(the before/after of the shared-memory transport); 'none': skip")
    args = ap.parse_args()

    import os

    from sweep.evaluate.stream import GrpcStreamer

    header = machine_line()
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances(args.utterances)
    streams = [int(s) for s in args.streams.split(",")]
    setup = serving_options(args)
    print(f"{header}\nserver: {serving_label(setup)}; {len(utts)} utterances, "
          f"{sum(u.duration for u in utts):.0f} s of audio", flush=True)
    replay = OrtReplay(model, engine, setup.instances, setup.intra_op_threads, utts)
    replay.warm(list(range(1, setup.max_batch_size + 1)))

    plan = [(args.transport, n) for n in streams]
    if args.baseline_transport != "none":
        plan += [(args.baseline_transport, n) for n in (1, 16)]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in plan}
    with serve(model, engine, LocalServer(), OUT / "throughput", setup) as served:
        endpoint = served.endpoint
        meter = CpuMeter(str(served.repository.path))
        probe = StatsProbe(endpoint.grpc_url)
        # Warm-up: every batch size gets its first (slow) ONNX Runtime run here.
        for transport in {t for t, _ in plan}:
            GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name, streams=16,
                         transport=transport).run(utts[:32])
        for rnd in range(args.repeat):
            for transport, n in plan:
                streamer = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                                        streams=n, transport=transport)
                row = measure(streamer, utts, meter, probe, args)
                row["round"] = rnd
                if n == 16:
                    row["ort_limit"] = replay.throughput(row["batches"], row["audio_per_chunk"])
                runs[(transport, n)].append(row)
                cpu_txt = " ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms_per_chunk"].items())
                print(f"round {rnd} {transport}->{row['transport']} streams {n:3d}: "
                      f"{row['audio_s_per_s']:6.1f} audio-s/s p50 {row['p50_ms']:6.1f} p99 "
                      f"{row['p99_ms']:6.1f} ms | server {row['server_ms']:6.1f} ms (queue "
                      f"{row['queue_ms']:.1f}) mean batch {row['mean_batch']:.1f} | cpu "
                      f"ms/chunk {cpu_txt} | others {row['other_cores']:.2f} cores"
                      + (f" | ORT limit {row['ort_limit']:.1f} audio-s/s" if n == 16 else ""),
                      flush=True)
    # Every run streams the same utterances, so any run's audio per chunk is the set's.
    per_chunk = next(iter(runs.values()))[0]["audio_per_chunk"]
    limits = ceiling(model, engine, utts, setup.max_batch_size, per_chunk)
    print("in-process ceilings (audio-s/s):", {k: round(v, 1) for k, v in limits.items()})

    def med(key: tuple[str, int], field: str) -> float:
        return median([r[field] for r in runs[key]])

    def cpu(key: tuple[str, int], part: str) -> float:
        return median([r["cpu_ms_per_chunk"][part] for r in runs[key]])

    main_t = args.transport
    used = runs[plan[0]][0]["transport"]
    base1 = med((main_t, 1), "audio_s_per_s") if (main_t, 1) in runs else float("nan")
    rows = []
    for key in plan:
        transport, n = key
        rows.append([f"{runs[key][0]['transport']}", n, med(key, "audio_s_per_s"),
                     med(key, "audio_s_per_s") / base1, med(key, "p50_ms"), med(key, "p99_ms"),
                     med(key, "mean_ms"), med(key, "server_ms"), med(key, "queue_ms"),
                     med(key, "mean_batch"), med(key, "infer_ms_per_chunk"),
                     cpu(key, "client"), cpu(key, "tritonserver"), cpu(key, "stub"),
                     cpu(key, "total"), med(key, "other_cores")])
    settings = dataclasses.asdict(setup)
    result: dict[str, Any] = {"setup": settings, "ceilings": limits,
                              "transport": main_t, "baseline_transport": args.baseline_transport,
                              "cores": os.cpu_count() or 1, "audio_per_chunk": per_chunk,
                              "runs": {f"{t} {n}": v for (t, n), v in runs.items()}}
    checks, extra = targets(runs, limits, settings, main_t, args.baseline_transport,
                            os.cpu_count() or 1, per_chunk)
    result.update(extra)
    result["checks"] = checks
    save_json(args.section, result)
    md = ["## Evaluation throughput (bench/throughput.py)\n", header, "",
          f"Server: {serving_label(setup)} (fp32 emulated engine, python backend); "
          f"{len(utts)} utterances ({sum(u.duration for u in utts):.0f} s of audio) per run; "
          f"medians of {args.repeat} interleaved rounds. Client transport {used} "
          f"(`--transport {main_t}`)"
          + (f"; the last rows: the {args.baseline_transport} transport as a baseline."
             if args.baseline_transport != "none" else "."), "",
          table(["transport", "streams", "audio s / s", "x 1 stream", "p50 ms", "p99 ms",
                 "mean ms", "server ms", "queue ms", "mean batch", "execution ms/chunk",
                 "client cpu ms/chunk",
                 "tritonserver cpu ms/chunk", "stub cpu ms/chunk", "total cpu ms/chunk",
                 "others' cores"], rows), "",
          "\"server ms\": Triton's queue + compute per request (statistics API); \"execution "
          "ms/chunk\": Triton's compute_infer per execution, shared out over the chunks of "
          "the batch (one instance's wall time per chunk, python-backend round trip "
          "included); \"others' "
          "cores\": CPU that processes other than this benchmark's used during the run (the "
          "machine is shared; 2.0 would be all of it).", "",
          f"Audio seconds are the test set's everywhere: a {model.chunk_ms} ms chunk carries "
          f"{per_chunk:.3f} s of it on average (the rest is the {model.pad_ms} ms of silence "
          "padded on both sides of an utterance and its zero-filled last chunk), and the "
          "in-process replay and ceilings are credited the same per chunk.", "",
          "In-process ONNX Runtime ceilings (audio s / s, no Triton): " +
          ", ".join(f"{k} {v:.1f}" for k, v in limits.items()) +
          " (bN_IxT: batch N on I sessions of T threads).", "",
          table(["target", "measured", "wanted", "verdict", "note"], [list(c) for c in checks])]
    text = "\n".join(md)
    print(text)
    if args.write:
        write_section(args.section, text)


if __name__ == "__main__":
    main()
