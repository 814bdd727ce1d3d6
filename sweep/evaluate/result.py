"""What a job's evaluation measured: the figures that become the run's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sweep.evaluate.capacity import Capacity
from sweep.evaluate.finals import FINAL_SILENCE_MS, final_summary
from sweep.evaluate.metrics import Scores, latency_summary, repeat_spread, summary_spread
from sweep.evaluate.stream import StreamRun
from sweep.evaluate.triton_stats import ServerStats


@dataclass(frozen=True)
class EvalResult:
    """Scores, per-chunk latency and throughput of one streamed pass over the test set,
    with the seconds each phase took. ``metrics()`` is the run's metric table (names
    unchanged since the first release: comparisons across sweeps keep working)."""

    scores: Scores
    run: StreamRun
    timings: dict[str, float] = field(default_factory=dict)
    capacity: Capacity | None = None  # eval.capacity=true: streams_at_slo and the search
    # Further streaming passes (eval.repeats - 1), timed only: latency figures are over
    # every pass's chunks, with the spread across passes beside them.
    repeats: tuple[StreamRun, ...] = ()
    # Paced runs: the silence after speech that makes a phrase final (eval.final_silence_ms).
    final_silence_ms: float = FINAL_SILENCE_MS
    # Triton's statistics over the streaming passes (triton_stats.py); None: not read.
    server: ServerStats | None = None
    # GPU memory the server's processes held after the passes; None: not readable (CPU).
    gpu_memory_bytes: int | None = None
    # The transport the client used (grpc or shm; eval.transport=auto chooses).
    transport: str = "grpc"

    def pooled_latencies(self) -> np.ndarray:
        """Every pass's per-chunk latencies: what the latency metrics are computed from, and
        what the job's latency plot draws."""
        return np.concatenate([p.latencies_ms for p in (self.run, *self.repeats)])

    def metrics(self) -> dict[str, float]:
        run = self.run
        passes = (run, *self.repeats)
        pooled = self.pooled_latencies()
        return {**self.scores.metrics(),
                **latency_summary(pooled), **repeat_spread([p.latencies_ms for p in passes]),
                "eval_repeats": float(len(passes)),
                "throughput_chunks_s": run.chunks / run.wall_seconds,
                "rtf": run.wall_seconds / max(run.audio_seconds, 1e-9),
                "eval_seconds": run.wall_seconds, "chunks": float(run.chunks),
                "utterances": float(len(run.results)), **self.paced(), **self.finals(),
                **(self.server.metrics() if self.server is not None else {}),
                **({"gpu_memory_used_bytes": float(self.gpu_memory_bytes)}
                   if self.gpu_memory_bytes is not None else {}),
                **(self.capacity.metrics() if self.capacity is not None else {}),
                **self.timings}

    def paced(self) -> dict[str, float]:
        """A paced run's own figures: latencies above are from the schedule; an unpaced
        run has no schedule, so no chunk of it can be late (none of these)."""
        run = self.run
        if run.pacing != "realtime":
            return {}
        values = run.latencies_ms
        return {"late_chunk_fraction": run.late_chunk_fraction,
                "behind_realtime_max_ms": run.behind_max_ms,
                "latency_p95_ms": float(np.percentile(values, 95)) if values.size else 0.0}

    def finals(self) -> dict[str, float]:
        """Paced runs: time to the final transcript and partial-result latency
        (finals.py), pooled over the passes, with their spread across passes."""
        passes = (self.run, *self.repeats)
        per_pass = [p.phrase_timings(self.final_silence_ms) for p in passes]
        pooled = final_summary([t for timings in per_pass for t in timings])
        if not pooled:
            return {}
        spread = summary_spread([final_summary(t) for t in per_pass])
        return pooled | {k: v for k, v in spread.items()
                         if not k.startswith("final_at_stream_end")}
