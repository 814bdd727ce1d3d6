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
    text = "\n".join([
        "## Summary: the targets\n",
        "From the sections below (same machine, same session; each figure is a ratio or "
        "a median of interleaved rounds measured in one run). \"Setting\" is the server "
        "configuration the figure was measured with.\n",
        table(["target", "setting", "measured", "wanted", "verdict", "note"], rows)])
    print(text)
    write_section("summary", text, first=True)


if __name__ == "__main__":
    main()
