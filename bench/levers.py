"""Which server settings make the evaluation fastest here: Triton's instance count, ONNX
Runtime's intra-op threads, the dynamic batcher's queue delay and max batch size.

Every setting gets its own tritonserver, all started up front (an idle server costs no
CPU), and the rounds go through the settings in turn, so that each round compares them
under the same conditions of this shared machine. Reported per setting: audio seconds per
wall second (median), the batch sizes Triton formed, and the CPU each process spent per
chunk (the figure that decides throughput once both cores are busy, and the one least
disturbed by other users of the machine).

Run: python -m bench.levers --setups 1:1:1000,1:2:1000,2:1:1000,1:1:0 --streams 1,16
     (a setup is INSTANCES:THREADS:QUEUE_DELAY_US[:MAX_BATCH]; MAX_BATCH defaults to the
     sweep's, ServingOptions.max_batch_size)
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

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
    table,
    utterances,
    wait_quiet,
    write_section,
)
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.serve import serve


def parse(spec: str) -> ServingOptions:
    parts = [int(p) for p in spec.split(":")]
    inst, thr, delay = parts[:3]
    return ServingOptions(instances=inst, intra_op_threads=thr, queue_delay_us=delay,
                          max_batch_size=parts[3] if len(parts) > 3
                          else ServingOptions.max_batch_size)


def main() -> None:
    # Unlike the other scripts, levers.py writes its section only when asked (--write).
    ap = bench_parser(__doc__, repeat=3, write=False, quiet_timeout=30.0)
    ap.add_argument("--setups", default="1:1:1000,1:2:1000,2:1:1000,1:1:0,1:1:4000")
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--utterances", type=int, default=100)
    args = ap.parse_args()

    from sweep.evaluate.stream import GrpcStreamer

    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances(args.utterances)
    setups = [parse(s) for s in args.setups.split(",")]
    streams = [int(s) for s in args.streams.split(",")]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        endpoints = []
        for i, setup in enumerate(setups):
            served = stack.enter_context(serve(model, engine, LocalServer(),
                                               OUT / f"levers-{i}", setup))
            ep = served.endpoint
            GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=16).run(utts[:32])
            endpoints.append((setup, ep, CpuMeter(str(served.repository.path)),
                              StatsProbe(ep.grpc_url)))
        for rnd in range(args.repeat):
            for n in streams:
                for setup, ep, meter, probe in endpoints:
                    wait_quiet(meter, args.quiet_cores, args.quiet_timeout)
                    probe.since()
                    c0 = meter.sample()
                    run = GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=n).run(utts)
                    cpu = CpuMeter.delta(c0, meter.sample())
                    stats = probe.since()
                    p50, p99, _ = percentiles(run.latencies_ms)
                    row: dict[str, Any] = {"audio_s_per_s": run.audio_seconds / run.wall_seconds,
                           "p50_ms": p50, "p99_ms": p99, "mean_batch": stats.mean_batch,
                           "server_ms": stats.server_ms_per_request,
                           "cpu": {k: 1000 * v / run.chunks for k, v in cpu.items()
                                   if k not in ("other", "wall")},
                           "other_cores": cpu["other"] / cpu["wall"]}
                    row["cpu"]["total"] = sum(row["cpu"].values())
                    runs.setdefault((serving_label(setup), n), []).append(row)
                    print(f"round {rnd} {serving_label(setup):36s} streams {n:3d}: "
                          f"{row['audio_s_per_s']:6.1f} audio-s/s p50 {p50:6.1f} ms "
                          f"batch {row['mean_batch']:4.1f} cpu ms/chunk " +
                          " ".join(f"{k} {v:.2f}" for k, v in row["cpu"].items()) +
                          f" | others {row['other_cores']:.2f} cores", flush=True)
    rows = []
    for setup in setups:
        for n in streams:
            rs = runs[(serving_label(setup), n)]
            rows.append([serving_label(setup), n, median([r["audio_s_per_s"] for r in rs]),
                         median([r["p50_ms"] for r in rs]), median([r["p99_ms"] for r in rs]),
                         median([r["mean_batch"] for r in rs]),
                         *[median([r["cpu"][k] for r in rs]) for k in
                           ("client", "tritonserver", "stub", "total")],
                         median([r["other_cores"] for r in rs])])
    save_json("levers", {f"{k[0]} | {k[1]}": v for k, v in runs.items()})
    text = "\n".join([
        "## Server settings (bench/levers.py)\n", header, "",
        f"{len(utts)} utterances per run, medians of {args.repeat} rounds; every setting "
        "has its own server and the rounds alternate between them.\n",
        table(["setting", "streams", "audio s / s", "p50 ms", "p99 ms", "mean batch",
               "client cpu ms/chunk", "tritonserver", "stub", "total cpu ms/chunk",
               "others' cores"], rows)])
    print(text)
    if args.write:
        write_section("levers", text)


if __name__ == "__main__":
    main()
