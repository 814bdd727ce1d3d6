"""Triton's side of a job: what its statistics API says the server spent the time on.

``get_inference_statistics`` keeps cumulative counters per model (requests, executions,
nanoseconds in the queue and in compute input / infer / output, and per executed batch
size). A snapshot before the measured window and one after it give what the window cost;
``ServerStats.metrics()`` turns that into per-request milliseconds and the histogram of
the batch sizes the dynamic batcher really formed (Model Analyzer and perf_analyzer report
the same split).

Several models behind one endpoint (an ensemble: preprocessing, then the acoustic model)
are summed per request of the entry model: a request's time in Triton is the time of every
step it went through. The batch histogram is the busiest model's (the most compute), the
one whose batching the server options tune.

GPU memory (``gpu_memory_used_bytes``): what the server's processes hold on the GPU, from
the host's ``nvidia-smi`` (it lists a container's processes too); None where there is no
nvidia-smi or no GPU (CPU hosts), so the metric is simply absent there.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from sweep.errors import EvaluationError


@dataclass
class ServerStats:
    """A difference of two statistics snapshots of one model (or their sum, see above)."""

    requests: int = 0
    executions: int = 0
    success_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    batches: dict[int, int] = field(default_factory=dict)  # batch size -> executions
    batch_infer_ns: dict[int, int] = field(default_factory=dict)

    def _per_request(self, ns: int) -> float:
        return ns / max(self.requests, 1) / 1e6

    @property
    def server_ms_per_request(self) -> float:
        """queue + compute (input, infer, output) per request, in ms."""
        return self.queue_ms + self.compute_ms

    @property
    def queue_ms(self) -> float:
        return self._per_request(self.queue_ns)

    @property
    def compute_ms(self) -> float:
        return self._per_request(self.compute_input_ns + self.compute_infer_ns
                                 + self.compute_output_ns)

    @property
    def mean_batch(self) -> float:
        n = sum(self.batches.values())
        return sum(b * c for b, c in self.batches.items()) / max(n, 1)

    def minus(self, before: ServerStats) -> ServerStats:
        d = ServerStats(**{k: getattr(self, k) - getattr(before, k) for k in _COUNTERS})
        for size, count in self.batches.items():
            if count - before.batches.get(size, 0) > 0:
                d.batches[size] = count - before.batches.get(size, 0)
                d.batch_infer_ns[size] = (self.batch_infer_ns[size]
                                          - before.batch_infer_ns.get(size, 0))
        return d

    def metrics(self) -> dict[str, float]:
        """The job's figures (``triton_*``); empty when no request reached the model."""
        if self.requests <= 0:
            return {}
        out = {"triton_requests": float(self.requests),
               "triton_executions": float(self.executions),
               "triton_queue_ms": self.queue_ms,
               "triton_compute_input_ms": self._per_request(self.compute_input_ns),
               "triton_compute_infer_ms": self._per_request(self.compute_infer_ns),
               "triton_compute_output_ms": self._per_request(self.compute_output_ns),
               "triton_server_ms": self.server_ms_per_request,
               "triton_mean_batch": self.mean_batch}
        # The histogram as metrics: executions at each batch size the batcher formed.
        out |= {f"triton_batch_{size}_executions": float(count)
                for size, count in sorted(self.batches.items())}
        return out


_COUNTERS = ("requests", "executions", "success_ns", "queue_ns", "compute_input_ns",
             "compute_infer_ns", "compute_output_ns")


def parse_model_stats(raw: dict[str, Any]) -> ServerStats:
    """One entry of ``model_stats`` (tritonclient's as_json form: counts and ns as
    strings or ints, fields missing when zero)."""
    inference = raw.get("inference_stats", {})

    def ns(key: str) -> int:
        return int(inference.get(key, {}).get("ns", 0))

    stats = ServerStats(requests=int(inference.get("success", {}).get("count", 0)),
                        executions=int(raw.get("execution_count", 0)),
                        success_ns=ns("success"), queue_ns=ns("queue"),
                        compute_input_ns=ns("compute_input"),
                        compute_infer_ns=ns("compute_infer"),
                        compute_output_ns=ns("compute_output"))
    for b in raw.get("batch_stats", []):
        size = int(b["batch_size"])
        stats.batches[size] = int(b.get("compute_infer", {}).get("count", 0))
        stats.batch_infer_ns[size] = int(b.get("compute_infer", {}).get("ns", 0))
    return stats


def combine(per_model: dict[str, ServerStats], entry: str) -> ServerStats:
    """The window's figures for a request of ``entry`` (module docstring): time summed over
    every model that ran, requests counted at the entry, batches of the busiest model."""
    if entry not in per_model:
        raise EvaluationError(f"Triton's statistics have no model {entry!r}; it has "
                              f"{', '.join(sorted(per_model)) or 'none'}.")
    ran = [s for s in per_model.values() if s.executions > 0]
    out = ServerStats(requests=per_model[entry].requests,
                      executions=sum(s.executions for s in ran))
    for key in ("success_ns", "queue_ns", "compute_input_ns", "compute_infer_ns",
                "compute_output_ns"):
        setattr(out, key, sum(getattr(s, key) for s in ran))
    if ran:
        busiest = max(ran, key=lambda s: s.compute_infer_ns)
        out.batches, out.batch_infer_ns = dict(busiest.batches), dict(busiest.batch_infer_ns)
    return out


def snapshot(grpc_url: str, timeout_s: float = 10.0) -> dict[str, ServerStats]:
    """Every loaded model's cumulative statistics, by name."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        data = client.get_inference_statistics("", as_json=True, client_timeout=timeout_s)
    except Exception as exc:
        raise EvaluationError(f"Triton at {grpc_url} did not give its statistics: {exc}") \
            from exc
    finally:
        client.close()
    return {str(m["name"]): parse_model_stats(m) for m in data.get("model_stats", [])}


class StatsWindow:
    """Snapshots around a measured window: ``with StatsWindow(url, model) as window:`` ...
    then ``window.stats`` holds what happened inside."""

    def __init__(self, grpc_url: str, entry_model: str) -> None:
        self.grpc_url, self.entry_model = grpc_url, entry_model
        self.stats: ServerStats | None = None
        self._before: dict[str, ServerStats] = {}

    def __enter__(self) -> StatsWindow:
        self._before = snapshot(self.grpc_url)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        after = snapshot(self.grpc_url)
        deltas = {name: s.minus(self._before.get(name, ServerStats()))
                  for name, s in after.items()}
        self.stats = combine(deltas, self.entry_model)


# -- GPU memory ------------------------------------------------------------------------

_SERVER_PROCESSES = ("tritonserver", "triton_python_backend_stub")


def parse_compute_apps(text: str) -> int | None:
    """Bytes held by Triton's processes in ``nvidia-smi --query-compute-apps=
    process_name,used_memory --format=csv,noheader,nounits`` output (MiB per line);
    None when none of the listed processes is Triton's."""
    total, found = 0, False
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 1)]
        if len(parts) != 2 or not any(n in parts[0] for n in _SERVER_PROCESSES):
            continue
        try:
            total += int(float(parts[1]) * 1024 * 1024)
        except ValueError:
            continue
        found = True
    return total if found else None


def gpu_memory_used_bytes(timeout_s: float = 10.0) -> int | None:
    """GPU memory Triton's processes hold now, or None where it cannot be read (no
    nvidia-smi: a CPU host; no Triton process on a GPU)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "--query-compute-apps=process_name,used_memory",
                               "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_compute_apps(done.stdout) if done.returncode == 0 else None
