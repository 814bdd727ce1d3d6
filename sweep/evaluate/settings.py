"""The ``eval`` config group: how the test set is streamed (the schema lives with its stage;
sweep/config.py registers it)."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.evaluate.capacity import CapacityBounds


@dataclass
class EvalConfig:
    streams: int = 16
    request_timeout_s: float = 30.0
    # How tensors travel: "shm" (system shared memory, the server on this machine), "grpc"
    # (inside the messages, any server), "auto" (shm when the server can see it).
    transport: str = "auto"
    # Features rounded to fp16 and back in the ensemble's preprocessing, as the seed's
    # DALI step does (skip_preprocessor contract only).
    fp16_features: bool = False
    # "none": each stream sends its next chunk as soon as the last answer is back (a closed
    # loop: throughput). "realtime": chunk k of a call is due at its start + k chunk
    # durations, like a phone call; latency is measured from when it was due
    # (sweep/evaluate/stream.py).
    pacing: str = "none"
    # Capacity at an SLO (sweep/evaluate/capacity.py): the most paced streams whose
    # p<slo_percentile> chunk latency stays within slo_ms with no stream behind real time.
    # The default SLO is T-one's (100 ms). Bounded: at most capacity_max_streams, each probe
    # capacity_probe_s of audio per stream, the whole search capacity_budget_s; a failing
    # count is probed capacity_retries more times (a pass is enough: others' load only adds).
    # The defaults are CapacityBounds' (one copy).
    capacity: bool = False
    slo_ms: float = CapacityBounds.slo_ms
    slo_percentile: float = CapacityBounds.percentile
    capacity_max_streams: int = CapacityBounds.max_streams
    capacity_probe_s: float = CapacityBounds.probe_s
    capacity_budget_s: float = CapacityBounds.budget_s
    capacity_retries: int = CapacityBounds.retries
    # Streaming passes over the test set: latency metrics are the median pass's, with the
    # spread across passes logged beside them (latency_p99_ms_min/_max/_spread); WER/CER
    # come from the first pass (decoding is deterministic). Small: each pass is a full run.
    repeats: int = 2
