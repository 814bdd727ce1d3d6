"""Why target 2 (Triton >= 70% of in-process ONNX Runtime) cannot hold on this machine:
what a pause between runs costs ONNX Runtime.

The in-process replay runs its batches back to back. A Triton instance cannot: between two
executions it waits for the next batch (the python-backend stub sleeps while tritonserver
and the client turn responses into requests), and on this virtual machine the next run
after such a pause is slower (likely: caches refilled, a halted vCPU woken up). This
script measures that with no serving at all: the fp32 emulated demo engine in one session
on one thread, as each Triton instance runs it, with a sleep of 0 to 5 ms before each run,
batch 1 and 4, medians of ``--repeat`` interleaved rounds.

Run: python -m bench.idle_gap [--repeat 5]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.batching import feed, session
from bench.common import (
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    median,
    save_json,
    table,
    write_section,
)

PAUSES_MS = (0.0, 0.5, 2.0, 5.0)
BATCHES = (1, 4)


def run_ms(sess: Any, inputs: dict[str, np.ndarray], pause_s: float, runs: int) -> float:
    """Median wall ms of one run, each run after ``pause_s`` of sleep; the state is carried
    over as a stream's is."""
    times = []
    for _ in range(runs):
        if pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        out = sess.run(None, inputs)
        times.append(time.perf_counter() - t0)
        inputs["state"] = out[1]
    return 1000 * float(np.median(times))


def main() -> None:
    ap = bench_parser(__doc__, repeat=5)
    ap.add_argument("--runs", type=int, default=150, help="runs per pause, batch and round")
    args = ap.parse_args()

    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    engine = fp32_engine(model)
    sess = session(engine.path, level=str(engine.runtime.get("graph_optimization_level",
                                                             "ORT_ENABLE_ALL")))
    rng = np.random.default_rng(0)
    inputs = {b: feed(sess, b, rng) for b in BATCHES}
    for b in BATCHES:
        run_ms(sess, inputs[b], 0.0, 10)
    rounds: dict[tuple[int, float], list[float]] = {}
    for rnd in range(args.repeat):  # interleaved: drift hits every pause alike
        for b in BATCHES:
            for pause in PAUSES_MS:
                ms = run_ms(sess, inputs[b], pause / 1000, args.runs)
                rounds.setdefault((b, pause), []).append(ms)
                print(f"round {rnd} batch {b} pause {pause:g} ms: {ms:.2f} ms per run",
                      flush=True)
    cost = {k: median(v) for k, v in rounds.items()}
    save_json("idle_gap", {f"{b} {p}": v for (b, p), v in rounds.items()})
    rows = [[b, f"{p:g}", cost[(b, p)], cost[(b, p)] / b, cost[(b, p)] / cost[(b, 0.0)]]
            for b in BATCHES for p in PAUSES_MS]
    worst = max(cost[(b, p)] / cost[(b, 0.0)] for b in BATCHES for p in PAUSES_MS)
    md = ["## What a pause between runs costs ONNX Runtime (bench/idle_gap.py)\n", header, "",
          f"The fp32 emulated demo engine, one session on one thread (one Triton instance), "
          f"no serving; a sleep before each run; medians of {args.repeat} interleaved rounds "
          f"of {args.runs} runs.\n",
          table(["batch", "pause before each run, ms", "ms per run", "ms per chunk",
                 "x back to back"], rows), "",
          "A Triton instance waits between executions for its next batch, and a single "
          "stream's instance waits between every two chunks; the replay that target 2 "
          f"compares with never does. Here a run after a pause costs up to {worst:.2f}x a run "
          "back to back, with the same inputs on the same session."]
    text = "\n".join(md)
    print(text)
    if args.write:
        write_section("idle_gap", text)


if __name__ == "__main__":
    main()
