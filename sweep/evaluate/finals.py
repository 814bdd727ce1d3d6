"""Time to the final transcript: what the caller of a voice bot waits for.

Per utterance three moments, on the clock of the call's audio (the padded audio the client
streams, sweep/evaluate/stream.py ``padded_audio``):

* **speech end**, read from the audio itself by an energy rule (``speech_bounds``): the
  manifest's utterances carry silence (or line noise) around the speech, and the client
  pads 300 ms more on both sides;
* **final due**, when T-one's splitter can close the phrase: ``final_silence_ms`` of
  silence after the speech end (T-one: 20 frames of 30 ms whose blank probability is
  >= 0.9, so 600 ms), or the end of the call's audio if that comes first (the end of the
  stream closes the last phrase);
* **final text**, when the client holds the answer to the chunk that carries the final due
  moment: only then can the splitter have seen the silence.

In a paced run (``eval.pacing=realtime``) audio time is wall time: chunk k covers the
call's audio [k c, (k + 1) c) and is sent when that audio exists, and its latency is
measured from then (the schedule). So the final text arrives (k + 1) c + latency_k after
the call's audio began, and its latency from the speech end is

    final_latency = (k + 1) c - speech_end + latency_k,

at least ``final_silence_ms`` whenever the call's audio lasts that long after the speech.
An unpaced run sends chunks as fast as answers come back: audio time is not wall time
there and none of these figures exist.

Partial results: a chunk that carries speech updates the partial transcript; its
partial-result latency is that chunk's latency from its audio's end (the schedule's), as
NVIDIA Riva reports partial results apart from final ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# T-one's splitter (TONE-FACTS.md): 20 silent frames of 30 ms end a phrase.
FINAL_SILENCE_MS = 600.0

# The energy rule. Frames of 10 ms (T-one's feature hop). A frame is speech when its
# energy (dB) lies above the noise floor by at least SPEECH_FRACTION of the span between
# the floor and the loud end, and at least MIN_MARGIN_DB above the floor. The floor is the
# 10th percentile of the frame energies (the padding and pauses: every utterance has some),
# the loud end the 95th (a click does not move it). A relative rule because the test sets
# mix digital silence (-inf dB) with line noise at 5-30 dB SNR: no fixed threshold fits
# both. On demo_test it puts the speech end within a frame or two of where a listener
# hears the last phoneme fade.
FRAME_MS = 10.0
FLOOR_PERCENTILE = 10.0
LOUD_PERCENTILE = 95.0
SPEECH_FRACTION = 0.3
MIN_MARGIN_DB = 6.0
_SILENT_DB = -120.0  # the energy given to an all-zero frame (log of 0 is -inf)


def frame_energy_db(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy of each whole 10 ms frame in dB relative to int16 full scale."""
    n = int(sample_rate * FRAME_MS / 1000)
    frames = np.asarray(samples, dtype=np.float64)[: samples.size // n * n].reshape(-1, n)
    power = (frames ** 2).mean(axis=1) / 32768.0 ** 2
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), _SILENT_DB)


def speech_bounds(samples: np.ndarray, sample_rate: int) -> tuple[float, float] | None:
    """(start, end) of the speech in seconds from the first sample, by the energy rule
    above; None when no frame stands out of the floor (silence or steady noise only)."""
    energy = frame_energy_db(samples, sample_rate)
    if energy.size == 0:
        return None
    floor, loud = np.percentile(energy, [FLOOR_PERCENTILE, LOUD_PERCENTILE])
    if loud - floor < MIN_MARGIN_DB:
        return None
    threshold = floor + max(SPEECH_FRACTION * (loud - floor), MIN_MARGIN_DB)
    speech = np.flatnonzero(energy > threshold)
    if speech.size == 0:
        return None
    frame_s = FRAME_MS / 1000.0
    return float(speech[0] * frame_s), float((speech[-1] + 1) * frame_s)


@dataclass(frozen=True)
class PhraseTiming:
    """One utterance's moments on the call's audio clock (seconds from its first padded
    sample) and its latencies; see the module docstring."""

    speech_start_s: float
    speech_end_s: float
    final_due_s: float
    final_chunk: int
    final_latency_ms: float
    at_stream_end: bool  # the audio ended before the splitter's silence did
    partial_latencies_ms: tuple[float, ...]


def phrase_timing(speech: tuple[float, float], audio_s: float, chunk_s: float,
                  latencies_ms: Sequence[float], silence_ms: float = FINAL_SILENCE_MS
                  ) -> PhraseTiming:
    """The final and partial latencies of one paced utterance. ``speech`` in seconds of the
    padded audio; ``latencies_ms``: each chunk's latency from its schedule."""
    start, end = speech
    if not latencies_ms:
        raise ValueError("an utterance with no chunks has no final transcript")
    due = min(end + silence_ms / 1000.0, audio_s)
    # The chunk whose audio holds the due moment (an end on a boundary: the chunk before).
    k = min(max(math.ceil(due / chunk_s - 1e-9) - 1, 0), len(latencies_ms) - 1)
    final = ((k + 1) * chunk_s - end) * 1000.0 + float(latencies_ms[k])
    first = int(start // chunk_s)
    last = min(max(math.ceil(end / chunk_s - 1e-9) - 1, first), len(latencies_ms) - 1)
    return PhraseTiming(speech_start_s=start, speech_end_s=end, final_due_s=due,
                        final_chunk=k, final_latency_ms=final,
                        at_stream_end=end + silence_ms / 1000.0 > audio_s + 1e-9,
                        partial_latencies_ms=tuple(float(v) for v in
                                                   latencies_ms[first:last + 1]))


def final_summary(timings: Sequence[PhraseTiming]) -> dict[str, float]:
    """The job's final and partial latency figures (empty without timings)."""
    if not timings:
        return {}
    finals = np.asarray([t.final_latency_ms for t in timings])
    partials = np.asarray([v for t in timings for v in t.partial_latencies_ms])
    p50, p95, p99 = np.percentile(finals, [50, 95, 99])
    out = {"final_latency_p50_ms": float(p50), "final_latency_p95_ms": float(p95),
           "final_latency_p99_ms": float(p99),
           "final_at_stream_end_fraction": float(np.mean([t.at_stream_end for t in timings]))}
    if partials.size:
        q50, q95 = np.percentile(partials, [50, 95])
        out |= {"partial_latency_p50_ms": float(q50), "partial_latency_p95_ms": float(q95)}
    return out
