"""Where the CPU goes while the sweep's client streams: py-spy on the client and on the
python-backend stub(s), per-thread CPU of tritonserver (C++, which py-spy cannot read).

While GrpcStreamer streams the test set with ``--streams`` streams, ``py-spy record``
samples this process (the client) and every stub for ``--seconds``; halfway through,
``py-spy dump`` takes one snapshot of each. Raw collapsed stacks and dumps land in
bench/out/profile-TRANSPORT/; the top frames (self and inclusive) are printed and, unless
--no-write, written to RESULTS.md.

Run: python -m bench.profile [--streams 16] [--seconds 10] [--transport auto|grpc|shm]
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from bench.common import (
    OUT,
    CpuMeter,
    bench_parser,
    demo_model,
    fp32_engine,
    machine_line,
    server_pids,
    serving_label,
    serving_options,
    table,
    utterances,
    write_section,
)
from sweep.server.local import LocalServer
from sweep.server.serve import serve

Shares = list[tuple[float, str]]


def summarise(raw: Path, top: int = 12) -> tuple[int, Shares, Shares]:
    """Self and inclusive shares of the frames in a py-spy raw (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    share = 100.0 / max(total, 1)
    return (total, [(c * share, f) for f, c in own.most_common(top)],
            [(c * share, f) for f, c in incl.most_common(top)])


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process (C++ threads: gRPC, backend instances)."""
    tck = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[comm] += (int(fields[11]) + int(fields[12])) / tck
    return dict(out)


def main() -> None:
    # The server settings: the sweep's own (ServingOptions) unless told otherwise.
    ap = bench_parser(__doc__, serving=True)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--transport", default="auto")
    args = ap.parse_args()
    if not shutil.which("py-spy"):
        raise SystemExit("py-spy is not installed: pip install py-spy")

    from sweep.evaluate.stream import GrpcStreamer

    header = machine_line()
    print(header, flush=True)
    # the transport is known before the run only when it is forced; auto is shm locally
    profile = OUT / f"profile-{'grpc' if args.transport == 'grpc' else 'shm'}"
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    model = demo_model()
    engine = fp32_engine(model)
    utts = utterances()
    setup = serving_options(args)
    sections: list[str] = []
    with serve(model, engine, LocalServer(), OUT / "profile", setup) as served:
        ep = served.endpoint
        marker = str(served.repository.path)
        GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=16).run(utts[:32])
        pids = server_pids(marker)
        targets = {"client": os.getpid(),
                   **{f"stub{i}": p for i, p in enumerate(sorted(pids["stub"]))}}
        server = pids["tritonserver"][0]
        streamer = GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=args.streams,
                                transport=args.transport)
        done = threading.Event()
        chunks: list[int] = []

        def stream() -> None:  # keep the client busy for the whole recording
            while not done.is_set():
                chunks.append(streamer.run(utts).chunks)

        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        time.sleep(1.0)
        meter = CpuMeter(marker)
        c0, t0 = meter.sample(), threads_cpu(server)
        procs = {name: subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
             "--rate", str(args.rate), "--format", "raw", "--nonblocking",
             "--output", str(profile / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in targets.items()}
        time.sleep(args.seconds / 2)
        for name, pid in targets.items():
            dump = subprocess.run(["py-spy", "dump", "--pid", str(pid), "--nonblocking"],
                                  capture_output=True, text=True)
            (profile / f"{name}.dump.txt").write_text(dump.stdout + dump.stderr)
        for p in procs.values():
            p.wait()
        cpu = CpuMeter.delta(c0, meter.sample())
        t1 = threads_cpu(server)
        done.set()
        worker.join()
    print(f"transport: {streamer.used_transport}", flush=True)
    wall = cpu["wall"]
    cores = {k: v / wall for k, v in cpu.items() if k != "wall"}
    per_thread = sorted(((t1[k] - t0.get(k, 0.0)) / wall, k) for k in t1)[::-1][:6]
    sections.append(
        f"Cores busy during the recording ({wall:.1f} s; \"other\" includes py-spy "
        "itself): " +
        ", ".join(f"{k} {v:.2f}" for k, v in cores.items()) +
        ". tritonserver threads (cores): " +
        ", ".join(f"{name} {v:.2f}" for v, name in per_thread if v > 0.005) + ".")
    for name in targets:
        raw = profile / f"{name}.txt"
        if not raw.exists():
            sections.append(f"{name}: py-spy wrote nothing (see `py-spy record` by hand).")
            continue
        total, own, incl = summarise(raw)
        sections.append(f"**{name}** ({total} samples of active threads; raw stacks in "
                        f"bench/out/{profile.name}/{name}.txt, a dump in {name}.dump.txt)"
                        "\n\n" +
                        table(["self %", "frame"], [[f"{p:.1f}", f"`{f}`"] for p, f in own[:8]]) +
                        "\n\n" +
                        table(["inclusive %", "frame"],
                              [[f"{p:.1f}", f"`{f}`"] for p, f in incl[:10]]))
    text = "\n".join([
        f"## Profile, {args.streams} streams (bench/profile.py)\n", header, "",
        f"Server: {serving_label(setup)}; transport {streamer.used_transport}; py-spy "
        f"{args.rate} Hz, non-blocking, {args.seconds:.0f} s.\n", "\n\n".join(sections)])
    print(text)
    if args.write:
        write_section(f"profile-{streamer.used_transport}", text)


if __name__ == "__main__":
    main()
