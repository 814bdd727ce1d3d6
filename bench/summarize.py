"""The targets of every benchmark in one table, from the JSON the scripts left in bench/out/:
writes the "summary" section at the top of bench/RESULTS.md. Measures nothing itself.

Run: python -m bench.summarize   (after throughput, overhead, scaling, batching, idle_gap)
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import OUT, bench_parser, median, table, verdict, write_section
from bench.throughput import replay_cpu_ms, targets

CHUNK_S = 0.4  # the demo model's chunk


def load(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def per_chunk(data: dict[str, Any]) -> float:
    """The test set's audio seconds per chunk (runs written before it was recorded credited
    a whole chunk)."""
    return float(data.get("audio_per_chunk", CHUNK_S))


def throughput_rows(name: str) -> list[list[str]]:
    data = load(name)
    if data is None:
        return []
    setup = data["setup"]
    used = next(iter(data["runs"].values()))[0].get("transport", data["transport"])
    label = (f"config defaults ({setup['instances']} instances, "
             f"{setup['queue_delay_us']} us delay), {used} client")
    runs = {}
    for key, value in data["runs"].items():
        transport, n = key.rsplit(" ", 1)
        runs[(transport, int(n))] = value
    checks, _ = targets(runs, data["ceilings"], data["setup"], data["transport"],
                        data["baseline_transport"], data.get("cores", 2), per_chunk(data))
    return [[c[0], label, c[1], c[2], c[3], c[4]] for c in checks]


def stub_share(profile: str) -> float | None:
    """Share of the stubs' py-spy samples inside ONNX Runtime's Session.run."""
    from bench.profile import summarise

    raws = sorted((OUT / profile).glob("stub*.txt"))
    raws = [r for r in raws if not r.name.endswith(".dump.txt")]
    if not raws:
        return None
    total = run = 0.0
    for raw in raws:
        n, _, incl = summarise(raw, top=50)
        total += n
        run += n * sum(p for p, f in incl if f.startswith("Session.run")) / 100
    return 100 * run / total if total else None


def why_not_target_1() -> list[str]:
    data = load("throughput")
    batching = load("batching")
    if not data or not batching:
        return []
    cost = {int(k): v for k, v in batching["per_chunk_ms"].items()}
    gain = cost[1] / cost[16]
    cores = data.get("cores", 2)
    # What the cores add together (one session per core at once), when measured.
    together = batching.get("concurrent_per_chunk_ms")
    scale = cores * cost[16] / together if together else float(cores)
    c = data["ceilings"]
    one = [r["audio_s_per_s"] for k, v in data["runs"].items() if k.endswith(" 1")
           and k.startswith(data["transport"]) for r in v]
    triton1 = sorted(one)[len(one) // 2] if one else None
    b1 = c.get("b1_1x1")
    lines = [
        "**Why target 1 cannot hold on this machine.** The work is ONNX Runtime's, and on a "
        f"CPU it barely gains from batching: with no serving at all, one thread, a chunk "
        f"costs {cost[1]:.2f} ms at batch 1 and {cost[16]:.2f} ms at batch 16, {gain:.2f}x "
        f"less, and {cores} sessions at once do {scale:.2f}x the work of one (section "
        f"batching). Sixteen streams can at most use all {cores} cores at the best batch "
        f"size, so against one stream running at ONNX Runtime's batch-1 speed they could "
        f"not pass {gain * scale:.1f}x even with serving free" + (
            f". Triton's own single stream is slower than that ({100 * triton1 / b1:.0f}% "
            "of in-process batch 1: a lone stream waits on gRPC, Triton and the python "
            "backend between chunks), so the ratio the target asks for has more room, but "
            "the CPU closes it:" if triton1 and b1 else ".")]
    sixteen = [r for k, v in data["runs"].items() if k == f"{data['transport']} 16"
               for r in v]
    if triton1 and sixteen:
        # 5x one stream's chunks per second on every core: the CPU a chunk may cost.
        budget = 1000 * cores * per_chunk(data) / (5 * triton1)
        spent = sorted(r["cpu_ms_per_chunk"]["total"] for r in sixteen)[len(sixteen) // 2]
        lines.append("")
        lines.append(
            f"5x one stream ({triton1:.0f} audio s/s) on {cores} cores leaves "
            f"{budget:.2f} CPU ms per chunk for client, tritonserver "
            f"and stubs together; 16 streams spend {spent:.2f} ms, and ONNX Runtime alone "
            f"needs {cost[4]:.2f} ms at batch 4 (the mean batch Triton forms is about 4).")
    share = stub_share("profile-shm")
    if share is not None:
        lines.append("")
        lines.append(
            f"With the shared-memory client, {share:.0f}% of the python-backend stubs' "
            "py-spy samples at 16 streams are inside `Session.run` (section "
            "profile-shm): the serving path left little else to cut; what remains is ONNX "
            "Runtime's compute on two cores.")
    return lines


def why_not_target_2() -> list[str]:
    data = load("throughput")
    if not data:
        return []
    runs = [r for r in data["runs"].get(f"{data['transport']} 16", []) if "ort_limit" in r]
    if not runs:
        return []
    cores = data.get("cores", 2)
    replay = median([replay_cpu_ms(r, cores, per_chunk(data)) for r in runs])
    part = {k: median([r["cpu_ms_per_chunk"][k] for r in runs])
            for k in ("client", "tritonserver", "stub", "total")}
    idle = median([cores - r["cpu_ms_per_chunk"]["total"] * r["chunks"] / r["wall_s"] / 1000
                - r["other_cores"] for r in runs])
    ratios = sorted(r["audio_s_per_s"] / r["ort_limit"] for r in runs)
    bounds = sorted(replay_cpu_ms(r, cores, per_chunk(data)) / r["cpu_ms_per_chunk"]["total"]
                    for r in runs)
    lines = [
        f"**Why target 2 does not hold here reliably.** At 16 streams the {cores} cores are "
        f"busy (idle {max(idle, 0.0):.2f} of {cores} on average), so the ratio is close to "
        f"that of CPU per chunk: the replay spends {replay:.2f} ms (the batches Triton "
        f"formed, back to back, one session per core), the Triton path {part['total']:.2f} "
        f"ms: stubs {part['stub']:.2f} (ONNX Runtime and the python backend's round trip), "
        f"client {part['client']:.2f}, tritonserver {part['tritonserver']:.2f}. Round by "
        f"round that bound was {100 * bounds[0]:.0f}-{100 * bounds[-1]:.0f}% and the "
        f"measured ratio {100 * ratios[0]:.0f}-{100 * ratios[-1]:.0f}% (median "
        f"{100 * median(ratios):.0f}%). The client and tritonserver cost "
        f"{part['client'] + part['tritonserver']:.2f} ms per chunk whatever the model, so "
        "the ratio falls when this shared machine runs ONNX Runtime faster, and rises when "
        "it runs it slower: 70% sits inside the spread."]
    calls = load("client_calls")
    if calls and "unary calls (the streamer)" in calls:
        unary = calls.pop("unary calls (the streamer)")["client_cpu_ms"]
        best_name, best = min(calls.items(), key=lambda kv: kv[1]["client_cpu_ms"])
        lines[-1] += (f" Another way of calling would not free the CPU that is missing: the "
                      f"cheapest in section client_calls ({best_name}) saves the client "
                      f"{unary - best['client_cpu_ms']:.3f} ms per request against the "
                      f"streamer's unary calls ({unary:.3f} ms), where 70% would need "
                      f"{part['total'] - replay / 0.7:.2f} ms per chunk cut."
                      if part["total"] > replay / 0.7 else "")
    gap = load("idle_gap")
    if gap:
        cost = {tuple(float(x) for x in k.split()): median(v) for k, v in gap.items()}
        worst = max(v / cost[(b, 0.0)] for (b, _p), v in cost.items())
        lines += ["", "A served model also waits between batches, which the replay never "
                  f"does; here a run after a pause of a few milliseconds costs up to "
                  f"{worst:.2f}x a run back to back (section idle_gap; mostly at batch 1, "
                  "where one stream runs)."]
    return lines


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    rows: list[list[str]] = []
    rows += throughput_rows("throughput")
    over = load("overhead")
    modes = (("local_kept", "local", "as shipped: one server per sweep, models swapped", 3.0),
             ("local_fresh", "local", "server.keep_running=false: a server per job", 3.0),
             ("docker_fresh", "docker", "as shipped: a container per job", 6.0),
             ("docker_kept", "docker", "server.keep_running=true: one container, swapped",
              6.0))
    for key, server, label, limit in modes if over else ():
        assert over is not None
        if f"job_{key}" not in over:
            continue
        job = over[f"job_{key}"]
        note = f"start or swap {job['startup']:.2f} s, stop {job['stop']:.2f} s"
        if key.endswith("kept"):
            note += (f"; once per sweep: first job {over[f'first_{key}']['overhead']:.2f} s, "
                     f"final stop {over[f'close_{server}']:.2f} s")
        rows.append([f"4. sweep overhead per job, {server}", label, f"{job['overhead']:.2f} s",
                     f"<= {limit:g} s", verdict(job["overhead"] <= limit), note])
    ceiling = load("ceiling")
    if ceiling:
        cap, probe = ceiling["capacity"], ceiling["probe"]
        rows.append(["streams_at_slo / machine ceiling", f"config defaults, {cap['arrivals']} "
                     "arrivals, one run", f"{ceiling['ratio']:.2f}", "", "",
                     f"{cap['streams_at_slo']} streams (interval {cap['interval'][0]}-"
                     f"{cap['interval'][1]}) / {ceiling['ceiling']['streams']:.0f} (ONNX "
                     f"Runtime, batch {ceiling['ceiling']['best_batch']}, every core); at "
                     f"capacity mean batch {probe['mean_batch']:.2f}, idle "
                     f"{ceiling['split']['idle (latency headroom)']:.2f} of the cores"])
    scaling = load("scaling")
    if scaling:
        rows.append(["5a. eval time linear in utterances (50, 100, 200)", "as shipped",
                     f"R^2 {scaling['r2_best']:.4f}", ">= 0.98",
                     verdict(scaling["r2_best"] >= 0.98),
                     f"all runs {scaling['r2_all']:.4f}, CPU seconds {scaling['r2_cpu']:.4f}"])
        rows.append(["5b. client peak RSS growth 50 -> 200 utterances", "as shipped",
                     f"{scaling['growth_mb']:+.1f} MB", "<= 50 MB",
                     verdict(scaling["growth_mb"] <= 50), ""])
    why = why_not_target_1()
    why2 = why_not_target_2()
    if why2:
        why += ["", *why2]
    text = "\n".join([
        "## Summary: the targets\n",
        "From the sections below (same machine, same session; each figure is a ratio or "
        "a median of interleaved rounds measured in one run). \"Setting\" is the server "
        "configuration the figure was measured with.\n",
        table(["target", "setting", "measured", "wanted", "verdict", "note"], rows),
        *(["", *why] if why else [])])
    print(text)
    if args.write:
        write_section("summary", text, first=True)


if __name__ == "__main__":
    main()
