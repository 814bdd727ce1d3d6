"""The ``eval`` config group: how the test set is streamed (the schema lives with its stage;
sweep/config.py registers it)."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.evaluate.arrivals import ARRIVALS
from sweep.evaluate.capacity import CapacityBounds
from sweep.evaluate.finals import FINAL_SILENCE_MS


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
    # How the capacity probes' calls arrive (sweep/evaluate/arrivals.py): "staggered" (N
    # calls, started over one chunk, each replaced when it ends: N always in progress) or
    # "poisson" (calls arrive at random, rate N / mean call length, each holding an
    # exponentially distributed time: N in progress on average, as an Erlang load).
    arrivals: str = "staggered"
    # The mean call length of poisson arrivals in seconds; null: the test set's mean
    # utterance duration (a call is one phrase).
    call_mean_s: float | None = None
    arrivals_seed: int = 0
    # The admission limit (concurrent calls to let in per server) keeps this share of the
    # capacity free: floor(streams_at_slo_min * (1 - headroom)), the interval's low end.
    admission_headroom: float = 0.2
    # What the serving host costs per hour (any currency); > 0 logs cost_per_audio_hour
    # at the admission limit (each admitted call brings one hour of audio an hour).
    cost_per_hour: float = 0.0
    # Time to the final transcript (paced runs; sweep/evaluate/finals.py): the silence after
    # the speech that closes a phrase. T-one's splitter: 20 frames of 30 ms.
    final_silence_ms: float = FINAL_SILENCE_MS
    # Streaming passes over the test set: latency metrics are the median pass's, with the
    # spread across passes logged beside them (latency_p99_ms_min/_max/_spread); WER/CER
    # come from the first pass (decoding is deterministic). Small: each pass is a full run.
    repeats: int = 2

    def capacity_bounds(self) -> CapacityBounds:
        """What bounds the job's capacity search (eval.capacity=true)."""
        return CapacityBounds(slo_ms=self.slo_ms, percentile=self.slo_percentile,
                              max_streams=self.capacity_max_streams,
                              probe_s=self.capacity_probe_s, budget_s=self.capacity_budget_s,
                              retries=self.capacity_retries, arrivals=self.arrivals,
                              call_mean_s=self.call_mean_s, seed=self.arrivals_seed,
                              final_silence_ms=self.final_silence_ms)

    def __post_init__(self) -> None:
        # Checked when the config is read (OmegaConf builds this class), before any job.
        from sweep.errors import ConfigError

        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"eval.arrivals={self.arrivals!r}; expected one of "
                                  f"{', '.join(ARRIVALS)}.")
        if self.call_mean_s is not None and self.call_mean_s <= 0:
            raise ConfigError(f"eval.call_mean_s={self.call_mean_s}; expected a positive "
                                  "mean call length in seconds, or null for the test set's "
                                  "mean utterance duration.")
        if not 0 <= self.admission_headroom < 1:
            raise ConfigError(f"eval.admission_headroom={self.admission_headroom}; "
                                  "expected a share of capacity in [0, 1), e.g. 0.2 to keep "
                                  "20 % free.")
        if self.cost_per_hour < 0:
            raise ConfigError(f"eval.cost_per_hour={self.cost_per_hour}; expected the "
                                  "serving host's price per hour, 0 or more.")
        if self.final_silence_ms <= 0:
            raise ConfigError(f"eval.final_silence_ms={self.final_silence_ms}; expected "
                                  "the silence that ends a phrase in ms (T-one: 600).")
