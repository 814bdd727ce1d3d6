"""Target 5: evaluation time grows linearly with the test set, the client's memory does not.

One local Triton; for 50, 100 and 200 utterances of demo_test the streaming client
(GrpcStreamer, ``--streams`` streams) runs in a fresh Python process, which reports its
wall time and its resident memory (VmRSS before and after the run, VmHWM: the peak). The
sizes are interleaved over ``--repeat`` rounds. Targets: the least-squares line through
(utterances, seconds) has R^2 >= 0.98; the client's peak RSS grows <= 50 MB from 50 to 200
utterances.

The server runs with the sweep's settings (ServingOptions).

Run: python -m bench.scaling [--repeat 3] [--streams 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    OUT,
    ROOT,
    CpuMeter,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    median,
    save_json,
    serving_label,
    table,
    utterances,
    verdict,
    wait_quiet,
    write_section,
)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(url: str, n: int, streams: int) -> None:
    """One evaluation in this (fresh) process; prints a JSON line."""
    import resource
    import time

    from sweep.evaluate.stream import GrpcStreamer

    model = demo_model()
    utts = utterances(n)
    streamer = GrpcStreamer(model, url, "model", streams=streams)
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    run = streamer.run(utts)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
    print(json.dumps({"n": n, "wall": wall, "client_cpu_s": cpu,
                      "audio_s": run.audio_seconds, "chunks": run.chunks,
                      "rss_before_mb": rss0 / 1024, "rss_after_mb": _status_kb("VmRSS") / 1024,
                      "peak_mb": _status_kb("VmHWM") / 1024,
                      "transport": streamer.used_transport}))


def r_squared(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(x, y, 1)
    fit = slope * x + intercept
    ss_res = float(((y - fit) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot else 1.0, float(slope), float(intercept)


def main() -> None:
    ap = bench_parser(__doc__, repeat=3, quiet_timeout=30.0)
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.streams)
        return

    # Imported here, not for the child: its RSS is what the client alone needs.
    from sweep.server.base import ServingOptions
    from sweep.server.local import LocalServer
    from sweep.server.serve import serve

    header = machine_line()
    print(header, flush=True)
    model = demo_model()
    engine = fp32_engine(model)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: list[dict[str, Any]] = []
    options = ServingOptions()
    with serve(model, engine, LocalServer(), OUT / "scaling", options) as served:
        ep = served.endpoint
        meter = CpuMeter(str(served.repository.path))
        from sweep.evaluate.stream import GrpcStreamer

        GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=16).run(utterances(32))
        for rnd in range(args.repeat):
            for n in sizes:
                wait_quiet(meter, args.quiet_cores, args.quiet_timeout)
                c0 = meter.sample()
                out = subprocess.run(
                    [sys.executable, "-m", "bench.scaling", "--child", ep.grpc_url, str(n),
                     "--streams", str(args.streams)], cwd=ROOT, capture_output=True,
                    text=True, check=True)
                cpu = CpuMeter.delta(c0, meter.sample())
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["round"] = rnd
                # others = the machine's busy time minus the server's and the client's
                row["other_cores"] = (cpu["other"] - row["client_cpu_s"]) / cpu["wall"]
                row["cpu_s"] = row["client_cpu_s"] + cpu["tritonserver"] + cpu["stub"]
                runs.append(row)
                print(f"round {rnd} {n:4d} utterances: {row['wall']:6.2f} s "
                      f"({row['audio_s']:.0f} s audio, {row['transport']}) "
                      f"RSS {row['rss_before_mb']:.0f} -> {row['rss_after_mb']:.0f} MB, "
                      f"peak {row['peak_mb']:.0f} MB | others {row['other_cores']:.2f} cores",
                      flush=True)
    # The fastest run of each size is the least disturbed by other users of the machine
    # (what timeit does); the fit is over those. CPU seconds (client + server) are almost
    # immune to the disturbance and are fitted as well.
    xs = np.array(sizes, float)
    best = np.array([min(r["wall"] for r in runs if r["n"] == n) for n in sizes])
    r2, slope, intercept = r_squared(xs, best)
    r2_all, _, _ = r_squared(np.array([r["n"] for r in runs], float),
                             np.array([r["wall"] for r in runs], float))
    cpu_s = np.array([median([r["cpu_s"] for r in runs if r["n"] == n]) for n in sizes])
    r2_cpu, cpu_slope, cpu_icpt = r_squared(xs, cpu_s)
    audio = np.array([median([r["audio_s"] for r in runs if r["n"] == n]) for n in sizes])
    r2_audio, _, _ = r_squared(audio, best)
    peak = {n: median([r["peak_mb"] for r in runs if r["n"] == n]) for n in sizes}
    growth = peak[max(sizes)] - peak[min(sizes)]
    save_json("scaling", {"runs": runs, "r2_best": r2, "r2_all": r2_all, "r2_cpu": r2_cpu,
                          "r2_audio": r2_audio, "peak_mb": peak, "growth_mb": growth})
    rows = [[n, float(audio[i]), float(best[i]),
             median([r["wall"] for r in runs if r["n"] == n]), float(slope * n + intercept),
             float(cpu_s[i]),
             median([r["rss_before_mb"] for r in runs if r["n"] == n]),
             median([r["rss_after_mb"] for r in runs if r["n"] == n]), peak[n],
             median([r["other_cores"] for r in runs if r["n"] == n])]
            for i, n in enumerate(sizes)]
    text = "\n".join([
        "## Scaling with the test set (bench/scaling.py)\n", header, "",
        f"{args.streams} streams, one client process per run (transport "
        f"{runs[0]['transport']}), server {serving_label(options)}, medians of "
        f"{args.repeat} interleaved rounds.\n",
        table(["utterances", "audio s", "eval s (fastest)", "eval s (median)", "linear fit s",
               "CPU s (client+server)", "RSS before MB",
               "RSS after MB", "peak RSS MB", "others' cores"], rows), "",
        f"Fit through the fastest run of each size: {slope * 1000:.1f} ms per utterance + "
        f"{intercept:.2f} s, R^2 = {r2:.4f} (against audio seconds: {r2_audio:.4f}; all "
        f"{len(runs)} runs: {r2_all:.4f}). CPU seconds: {cpu_slope * 1000:.1f} ms per "
        f"utterance + {cpu_icpt:.2f} s, R^2 = {r2_cpu:.4f}.", "",
        table(["target", "measured", "wanted", "verdict"], [
            ["5a. eval time linear in utterances (fastest of each size)", f"R^2 {r2:.4f}",
             ">= 0.98",
             verdict(r2 >= 0.98)],
            ["5b. client peak RSS growth 50 -> 200 utterances", f"{growth:+.1f} MB",
             "<= 50 MB", verdict(growth <= 50)]])])
    print(text)
    if args.write:
        write_section("scaling", text)


if __name__ == "__main__":
    main()
