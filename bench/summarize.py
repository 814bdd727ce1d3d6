"""The targets of every benchmark in one table, from the JSON the scripts left in bench/out/:
writes the "summary" section at the top of bench/RESULTS.md. Measures nothing itself.

Run: python bench/summarize.py   (after throughput.py, overhead.py, scaling.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, table, verdict, write_section
from bench.throughput import targets


def load(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def throughput_rows(name: str, label: str) -> list[list[str]]:
    data = load(name)
    if data is None:
        return []
    runs = {}
    for key, value in data["runs"].items():
        transport, n = key.rsplit(" ", 1)
        runs[(transport, int(n))] = value
    checks, _ = targets(runs, data["ceilings"], data["setup"], data["transport"],
                        data["baseline_transport"], data.get("cores", 2))
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
    data = load("throughput-recommended") or load("throughput")
    if not data:
        return []
    c = data["ceilings"]
    b1 = c.get("b1_1x1")
    multi = max((v for k, v in c.items() if not k.startswith("b1_")), default=None)
    if not b1 or not multi:
        return []
    one = [r["audio_s_per_s"] for k, v in data["runs"].items() if k.endswith(" 1")
           and k.startswith(data["transport"]) for r in v]
    triton1 = sorted(one)[len(one) // 2] if one else None
    share = stub_share("profile-shm")
    lines = [
        "**Why target 1 cannot hold on this machine.** The work is ONNX Runtime's, and on a "
        "CPU it barely gains from batching: in-process, with no serving at all, batch 1 on "
        f"one core gives {b1:.0f} audio s/s and batch 16 on all {data.get('cores', 2)} cores "
        f"{multi:.0f} audio s/s, {multi / b1:.1f}x. Sixteen streams can at most use every "
        "core at the best batch size, so 16 streams over 1 stream is bounded by that ratio "
        "times what serving adds to a lone stream's chunk" + (
            f" (Triton at 1 stream: {triton1:.0f} audio s/s, {100 * triton1 / b1:.0f}% of "
            f"in-process batch 1): {multi / triton1:.1f}x, not 5x." if triton1 else ".")]
    if share is not None:
        lines.append("")
        lines.append(
            f"With the shared-memory client, {share:.0f}% of the python-backend stubs' "
            "py-spy samples at 16 streams are inside `Session.run` (section "
            "profile-shm): the serving path left little else to cut; what remains is ONNX "
            "Runtime's compute on two cores.")
    return lines


def main() -> None:
    rows: list[list[str]] = []
    rows += throughput_rows("throughput", "config defaults (1 instance, 1000 us delay), shm client")
    rows += throughput_rows("throughput-recommended",
                            "recommended: 2 instances, 0 us delay, shm client")
    over = load("overhead")
    if over:
        job = over["job_local"]["overhead"]
        rows.append(["4. sweep overhead per job, local", "as shipped (restart per job)",
                     f"{job:.2f} s", "<= 3 s", verdict(job <= 3.0),
                     f"start+ready {over['job_local']['startup']:.2f} s, stop "
                     f"{over['job_local']['stop']:.2f} s"])
        life = over.get("lifecycles", {})
        shipped = life.get("restart (as shipped)", {}).get("total")
        for name, value in life.items():
            if name == "restart (as shipped)" or shipped is None:
                continue
            projected = job - shipped + value["total"]
            rows.append(["4. sweep overhead per job, local", f"lifecycle: {name}",
                         f"{projected:.2f} s", "<= 3 s", verdict(projected <= 3.0),
                         "the job's measured overhead with its restart replaced by this "
                         f"lifecycle ({value['total']:.2f} s instead of {shipped:.2f} s)"])
        if "job_docker" in over:
            d = over["job_docker"]["overhead"]
            rows.append(["4. sweep overhead per job, docker", "as shipped (fresh container)",
                         f"{d:.2f} s", "<= 6 s", verdict(d <= 6.0),
                         f"start+ready {over['job_docker']['startup']:.2f} s, stop "
                         f"{over['job_docker']['stop']:.2f} s"])
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
    text = "\n".join([
        "## Summary: the targets\n",
        "From the sections below (same machine, same session; each figure is a ratio or "
        "a median of interleaved rounds measured in one run). \"Setting\" is the server "
        "configuration the figure was measured with.\n",
        table(["target", "setting", "measured", "wanted", "verdict", "note"], rows),
        *(["", *why] if why else [])])
    print(text)
    write_section("summary", text, first=True)


if __name__ == "__main__":
    main()
