"""What the benchmarks share: the demo model and engine, the options every script takes,
the statistics API, per-process CPU accounting, and the RESULTS.md writer. Triton is
served as the sweep serves it: ``sweep.server.serve.serve`` with ``ServingOptions``.

Every benchmark measures its baseline in the same run and reports ratios, because this
machine (2 vCPUs, shared with other work) drifts by tens of percent between minutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.evaluate.triton_stats import ServerStats, snapshot
from sweep.server.base import ServingOptions

if TYPE_CHECKING:
    from sweep.data.manifest import Utterance
    from sweep.engine import Engine
    from sweep.model import ModelInterface

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"
DATASET = ROOT / "demo" / "assets" / "data" / "demo_test"
# The trained demo model; until it exists an untrained one of the same architecture (the
# speed is the same: the weights' values do not change the work).
ONNX_CANDIDATES = (ROOT / "demo" / "assets" / "demo_monolithic.onnx",
                   Path("/tmp/myexp/demo_monolithic.onnx"))


def onnx_path() -> Path:
    if os.environ.get("BENCH_ONNX"):
        return Path(os.environ["BENCH_ONNX"]).resolve()
    for path in ONNX_CANDIDATES:
        if path.exists():
            return path
    raise SystemExit("no demo model: set BENCH_ONNX=/path/to/demo_monolithic.onnx")


def demo_model(path: Path | None = None) -> ModelInterface:
    from sweep.model import Contract, ModelInterface, StatePair

    return ModelInterface(name="demo_monolithic", onnx_path=path or onnx_path(),
                          contract=Contract.MONOLITHIC, audio_input="signal",
                          logprobs_output="logprobs", states=(StatePair("state", "state_next"),))


def utterances(limit: int | None = None) -> list[Utterance]:
    from sweep.data.manifest import load_manifest

    utts = load_manifest(DATASET)
    return utts[:limit] if limit else utts


# The sweep's fp32 flag set without TF32 rounding: plain fp32, what the parity test serves.
FP32_FLAGS: dict[str, Any] = {"precision": "fp32", "tf32": False}


def fp32_engine(model: ModelInterface, flags: dict[str, Any] | None = None) -> Engine:
    """The emulated fp32 engine, built as a job builds it (``build_engine``, the emulate
    builder's defaults) into an engine cache under bench/out (built once)."""
    from sweep.builder import build_engine
    from sweep.builder.base import BuilderConfig
    from sweep.flags import FlagSet

    return build_engine(BuilderConfig(name="emulate", cache_dir=str(OUT / "engines")),
                        model.onnx_path, FlagSet.from_mapping(flags or FP32_FLAGS))


# -- options every script shares -----------------------------------------------------------

def bench_parser(doc: str | None, *, repeat: int | None = None, write: bool | None = True,
                 quiet_timeout: float | None = None, serving: bool = False
                 ) -> argparse.ArgumentParser:
    """A script's parser (its description: the first paragraph of ``doc``) with the options
    the benchmarks share, each defined here only:

    * ``--repeat N`` (default ``repeat``; None: the script has no rounds): interleaved rounds.
    * ``--no-write`` (``write=True``: the script writes its RESULTS.md section unless told
      not to) or ``--write`` (``write=False``: it writes only when told to); both set
      ``args.write``. None: neither.
    * ``--quiet-cores C --quiet-timeout S`` (default ``quiet_timeout``; None: neither):
      before each measured run, wait up to S seconds until other processes use fewer than
      C cores (``wait_quiet``).
    * with ``serving``, Triton's scheduling knobs ``--instances --threads --queue-delay-us
      --max-batch``, defaulting to the sweep's own (``ServingOptions``); read them back
      with ``serving_options(args)``.
    """
    import __main__

    spec = getattr(__main__, "__spec__", None)  # run as python -m bench.X
    ap = argparse.ArgumentParser(prog=f"python -m {spec.name}" if spec else None,
                                 description=(doc or "").split("\n\n")[0])
    if repeat is not None:
        ap.add_argument("--repeat", type=int, default=repeat,
                        help="interleaved rounds (medians or minima are reported)")
    if write is True:
        ap.add_argument("--no-write", dest="write", action="store_false",
                        help="print only; leave RESULTS.md alone")
    elif write is False:
        ap.add_argument("--write", dest="write", action="store_true",
                        help="also write the script's section of RESULTS.md")
    if quiet_timeout is not None:
        ap.add_argument("--quiet-cores", type=float, default=0.3,
                        help="before each run, wait until other processes use fewer cores")
        ap.add_argument("--quiet-timeout", type=float, default=quiet_timeout,
                        help="seconds to wait for that at most (0: do not wait)")
    if serving:
        knobs = ap.add_argument_group("server settings (default: the sweep's, ServingOptions)")
        knobs.add_argument("--instances", type=int, default=ServingOptions.instances,
                           help="Triton model instances")
        knobs.add_argument("--threads", type=int, default=ServingOptions.intra_op_threads,
                           help="ONNX Runtime intra-op threads per instance")
        knobs.add_argument("--queue-delay-us", type=int,
                           default=ServingOptions.queue_delay_us,
                           help="the dynamic batcher's max queue delay")
        knobs.add_argument("--max-batch", type=int, default=ServingOptions.max_batch_size,
                           help="the model's max batch size")
    return ap


def serving_options(args: argparse.Namespace) -> ServingOptions:
    """The server settings ``bench_parser(serving=True)`` parsed."""
    return ServingOptions(max_batch_size=args.max_batch, queue_delay_us=args.queue_delay_us,
                          instances=args.instances, intra_op_threads=args.threads)


def serving_label(options: ServingOptions) -> str:
    """A setting's name in the tables: ``inst=2 thr=1 delay=0us mbs=16``."""
    return (f"inst={options.instances} thr={options.intra_op_threads} "
            f"delay={options.queue_delay_us}us mbs={options.max_batch_size}")


# -- per-process CPU -----------------------------------------------------------------------

_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TCK


def server_pids(repository_marker: str) -> dict[str, list[int]]:
    """tritonserver and its python-backend stubs, found by the repository path they carry."""
    found: dict[str, list[int]] = {"tritonserver": [], "stub": []}
    marker = repository_marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker not in cmd:
            continue
        if b"triton_python_backend_stub" in cmd:
            found["stub"].append(int(entry.name))
        elif cmd.split(b"\0")[0].endswith(b"tritonserver"):
            found["tritonserver"].append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TCK


class CpuMeter:
    """CPU seconds used by the client (this process), tritonserver and the stubs, and by
    everything else on the machine ("other": work that is not ours, e.g. other users)."""

    def __init__(self, repository_marker: str | None = None) -> None:
        self.pids = {"client": [os.getpid()],
                     **(server_pids(repository_marker) if repository_marker else {})}

    def sample(self) -> dict[str, float]:
        ours = {k: sum(_cpu_seconds(p) for p in v) for k, v in self.pids.items()}
        ours["other"] = machine_busy_seconds() - sum(ours.values())
        ours["wall"] = time.perf_counter()
        return ours

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before[k] for k in before}


def other_cores(seconds: float = 1.0, meter: CpuMeter | None = None) -> float:
    """How many cores processes other than ours keep busy, averaged over ``seconds``."""
    meter = meter or CpuMeter()
    a = meter.sample()
    time.sleep(seconds)
    d = CpuMeter.delta(a, meter.sample())
    return d["other"] / d["wall"]


def wait_quiet(meter: CpuMeter | None = None, max_cores: float = 0.3,
               timeout_s: float = 0.0) -> float:
    """Wait (at most ``timeout_s``) until other processes use less than ``max_cores``;
    return what they used at the end. This machine is shared: a benchmark that runs while
    someone else compiles measures the compiler."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = other_cores(1.0, meter)
        if busy < max_cores or time.monotonic() >= deadline:
            return busy


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- Triton's statistics API --------------------------------------------------------------

# One reading of the statistics for the sweep and the benchmarks (sweep/evaluate/).
class StatsProbe:
    """Snapshots of one model's statistics; ``since()`` gives what happened in between."""

    def __init__(self, grpc_url: str, model_name: str = "model") -> None:
        self.grpc_url, self.model_name = grpc_url, model_name
        self.last = self._read()

    def _read(self) -> ServerStats:
        models = snapshot(self.grpc_url)
        if self.model_name not in models:
            raise SystemExit(f"Triton at {self.grpc_url} serves no model {self.model_name!r} "
                             f"(it serves {', '.join(sorted(models)) or 'none'})")
        return models[self.model_name]

    def since(self) -> ServerStats:
        now = self._read()
        d = now.minus(self.last)
        self.last = now
        return d


# -- figures -------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentiles(values: np.ndarray) -> tuple[float, float, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99), float(np.mean(values))


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    mem = int(found.group(1)) if found else 0
    from importlib.metadata import version

    return {"date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "cpu": f"{cpu}, {os.cpu_count()} vCPU", "memory": f"{mem / 2**20:.0f} GiB",
            "os": platform.platform(), "python": platform.python_version(),
            "versions": ", ".join(f"{p} {version(p)}" for p in (
                "onnxruntime", "tritonclient", "grpcio", "nvidia-pytriton", "numpy")),
            "model": str(onnx_path().relative_to(ROOT) if onnx_path().is_relative_to(ROOT)
                         else onnx_path()),
            "load": " ".join(Path("/proc/loadavg").read_text().split()[:3])}


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def write_section(name: str, markdown: str, first: bool = False) -> None:
    """Replace (or add) one benchmark's section of bench/RESULTS.md; a new section goes at
    the end, or right after the file's header with ``first``."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmark results\n\nWritten by the scripts in bench/ (see bench/README.md); each "
        "section is replaced when its script runs again. Ratios compare figures measured in "
        "the same run.\n\n")
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    elif first and "<!-- bench:" in text:
        at = text.index("<!-- bench:")
        text = text[:at] + block + "\n\n" + text[at:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def machine_line() -> str:
    m = machine()
    return (f"Machine: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}; "
            f"{m['versions']}. Model: `{m['model']}`. Date: {m['date']}; load average at the "
            f"start: {m['load']}.")


def publish(name: str, section: str, data: Any, *, write: bool) -> None:
    """Print a benchmark's section, keep its raw figures in bench/out/NAME.json and, with
    ``write``, replace its section of bench/RESULTS.md."""
    print(section)
    save_json(name, data)
    if write:
        write_section(name, section)


def save_json(name: str, data: Any) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
