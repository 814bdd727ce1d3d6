"""How many real-time calls one engine serves: client-side vs server-side state, and the
project's paced client against an open-loop baseline.

The fp32 emulated demo engine behind the local tritonserver, served twice with the same
scheduling knobs: ``state=client`` (the state round-trips in every request, dynamic
batcher) and ``state=server`` (Triton's sequence batcher, `oldest` strategy; the
python-backend model keeps each sequence's state by correlation id). For each, the
capacity search of ``eval.capacity=true`` (sweep/evaluate/capacity.py: paced streams, p95
chunk latency from the schedule within the SLO, no stream behind real time) and its
run time.

Then, on the client-state server, at a few stream counts, the paced client (chunk k sent
at its due time, or as soon as chunk k-1's state is back when that is later) against an
open-loop load (chunk k sent at its due time whatever happened to the others: the ideal
load generator; its requests carry zero state, which costs the model the same work, so
only its latency counts, not its transcripts; it asks for the next state back, so the
bytes on the wire are the paced client's). Both measure latency from the due time;
where they agree the paced client's own waiting adds nothing.

Run: python -m bench.capacity [--budget 120] [--probe-s 6] [--slo-ms 100] [--no-write]
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    OUT,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    other_cores,
    save_json,
    serving_label,
    serving_options,
    table,
    utterances,
    write_section,
)
from sweep.data.manifest import Utterance, read_audio
from sweep.evaluate.capacity import (
    Capacity,
    CapacityBounds,
    judge,
    measure,
    playlists,
)
from sweep.evaluate.stream import (
    _TRITON_DTYPES,
    GrpcStreamer,
    chunk_inputs,
    initial_state,
)
from sweep.model import ModelInterface
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.serve import serve
from sweep.tracking.plots import plot_capacity


async def _open_loop(model: ModelInterface, url: str, name: str, utts: list[Utterance],
                     lists: list[list[int]]) -> dict[str, float]:
    """Every chunk of every stream sent at its due time without waiting for any answer."""
    import tritonclient.grpc.aio as aioclient

    client = aioclient.InferenceServerClient(url)
    inputs, _ = model.tensors()
    zero = initial_state(model, inputs)
    chunk_s = model.chunk_ms / 1000.0
    audio = {i: list(chunk_inputs(model, read_audio(u.audio_path,
                                                    expected_rate=model.sample_rate)))
             for i, u in enumerate(utts)}
    latencies: list[float] = []
    late = 0
    # The paced client's bytes both ways: the state goes out and its next value comes back.
    outputs = [aioclient.InferRequestedOutput(model.logprobs_output),
               *(aioclient.InferRequestedOutput(p.output) for p in model.states)]

    async def one(chunk: dict[str, np.ndarray], due: float) -> None:
        nonlocal late
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tensors = []
        for key, array in (chunk | zero).items():
            t = aioclient.InferInput(key, list(array.shape), _TRITON_DTYPES[array.dtype.name])
            t.set_data_from_numpy(array)
            tensors.append(t)
        await client.infer(name, tensors, outputs=outputs, client_timeout=120)
        now = time.perf_counter()
        latencies.append((now - due) * 1000)
        late += now > due + chunk_s

    start = time.perf_counter()
    tasks = []
    for s, lst in enumerate(lists):
        due = start + s * chunk_s / len(lists)
        for index in lst:
            for chunk in audio[index]:
                tasks.append(one(chunk, due))
                due += chunk_s
    try:
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    values = np.asarray(latencies)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "late": late / max(len(latencies), 1)}


def paced_probe(model: ModelInterface, url: str, name: str, utts: list[Utterance], n: int,
                bounds: CapacityBounds, state: str) -> dict[str, float]:
    t0 = time.perf_counter()
    run = GrpcStreamer(model, url, name, streams=n, transport="grpc", pacing="realtime",
                       state=state).run_playlists(utts, playlists(utts, n, bounds.probe_s))
    point = judge(run, n, bounds, time.perf_counter() - t0)
    values = run.latencies_ms
    return {"p50": float(np.percentile(values, 50)), "p95": point.latency_ms,
            "late": point.late_chunk_fraction, "behind": point.behind_max_ms}


def main() -> None:
    ap = bench_parser(__doc__, serving=True)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per capacity search")
    ap.add_argument("--probe-s", type=float, default=6.0, help="audio seconds per probe stream")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--max-streams", type=int, default=256)
    ap.add_argument("--retries", type=int, default=2,
                    help="probes again of a failing count (it passes if one does)")
    ap.add_argument("--limit", type=int, default=40, help="utterances of demo_test used")
    args = ap.parse_args()

    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances(args.limit)
    base = serving_options(args)
    bounds = CapacityBounds(slo_ms=args.slo_ms, max_streams=args.max_streams,
                            probe_s=args.probe_s, budget_s=args.budget,
                            retries=args.retries)
    server = LocalServer()
    capacities: dict[str, Capacity] = {}
    latency: dict[tuple[str, int], dict[str, float]] = {}
    open_loop: dict[int, dict[str, float]] = {}
    busy: dict[str, float] = {}
    counts: list[int] = []
    for state in ("client", "server"):
        options = ServingOptions(**{**base.__dict__, "state": state,
                                    "max_candidate_sequences": max(args.max_streams, 1)})
        with serve(model, engine, server, OUT / f"capacity-{state}", options) as served:
            url, name = served.endpoint.grpc_url, served.endpoint.model_name
            busy[state] = other_cores(1.0)
            capacity = measure(model, url, name, utts, bounds, transport="grpc", state=state)
            capacities[state] = capacity
            print(f"state={state}: streams_at_slo {capacity.streams_at_slo} "
                  f"({capacity.seconds:.0f} s, {len(capacity.points)} probes, stopped: "
                  f"{capacity.stopped_by})", flush=True)
            plot_capacity(capacity, OUT / f"capacity-{state}.png",
                          f"fp32 demo, state={state}")
            if state == "client":
                found = max(capacity.streams_at_slo, 1)
                counts = sorted({max(found // 2, 1), found, 2 * found})
                for n in counts:
                    latency[(state, n)] = paced_probe(model, url, name, utts, n, bounds, state)
                    open_loop[n] = asyncio.run(_open_loop(
                        model, url, name, utts, playlists(utts, n, bounds.probe_s)))
                    print(f"n={n}: paced {latency[(state, n)]}, open loop {open_loop[n]}",
                          flush=True)
            else:
                for n in counts:
                    latency[(state, n)] = paced_probe(model, url, name, utts, n, bounds, state)
                    print(f"n={n}: server state paced {latency[(state, n)]}", flush=True)

    save_json("capacity", {"capacity": {s: {"streams_at_slo": c.streams_at_slo,
                                            "seconds": c.seconds, "stopped_by": c.stopped_by,
                                            "points": [p.__dict__ for p in c.points]}
                                        for s, c in capacities.items()},
                           "latency": {f"{s} {n}": v for (s, n), v in latency.items()},
                           "open_loop": open_loop, "other_cores": busy})
    cap_rows = [[s, c.streams_at_slo, len(c.points), c.stopped_by, c.seconds, busy[s]]
                for s, c in capacities.items()]
    ratio = capacities["server"].streams_at_slo / max(capacities["client"].streams_at_slo, 1)
    lat_rows: list[list[Any]] = []
    for n in counts:
        c, s, o = latency[("client", n)], latency[("server", n)], open_loop[n]
        lat_rows.append([n, c["p50"], c["p95"], c["late"], s["p50"], s["p95"], s["late"],
                         o["p95"], o["late"], c["p95"] / max(o["p95"], 1e-9)])
    ratios = [row[-1] for row in lat_rows]
    low, high = min(ratios), max(ratios)
    md = ["## Capacity at a latency SLO (bench/capacity.py)\n", header, "",
          f"The fp32 emulated demo engine, {serving_label(base)}, {len(utts)} utterances of "
          f"demo_test cycled over the streams, {args.probe_s:g} s of audio per stream and "
          f"probe; SLO: p95 chunk latency from the schedule <= {args.slo_ms:g} ms and no "
          f"stream behind real time; each search bounded to {args.budget:g} s, a failing "
          f"count probed {args.retries} more times (it passes if one probe does). One round: "
          "the search is a sequence of paced runs, so its figure moves with the machine's "
          "load (other cores busy at the start, measured, in the last column).\n",
          table(["state", "streams_at_slo", "probes", "stopped by", "search s",
                 "other cores busy"], cap_rows), "",
          f"Server-side state serves {ratio:.2f}x the calls of client-side state on this "
          "machine.\n",
          "Latency from the schedule at fixed stream counts (around the client-state "
          "capacity); open loop: the same chunks sent on schedule without waiting.\n",
          table(["streams", "client p50 ms", "client p95 ms", "client late",
                 "server p50 ms", "server p95 ms", "server late", "open-loop p95 ms",
                 "open-loop late", "paced/open-loop p95"], lat_rows), "",
          f"The paced client's p95 is {low:.2f}x to {high:.2f}x the open loop's at these "
          "counts. Differences: the open loop never waits, so a chunk is never sent late "
          "for want of its state; the paced client sends a late stream's next chunk only "
          "once its state is back, which offers the server less load but counts the wait "
          "from the schedule. Single paced runs on a shared machine: the search's verdict "
          "at one count can differ from the fixed-count run at the same count (compare "
          "the two tables); the search's points are in bench/out/capacity.json.",
          f"\nPlots: {Path('bench/out/capacity-client.png')}, "
          f"{Path('bench/out/capacity-server.png')} (not committed)."]
    text = "\n".join(md)
    print(text)
    if args.write:
        write_section("capacity", text)


if __name__ == "__main__":
    main()
