"""Time to the final transcript (sweep/evaluate/finals.py): the energy rule on synthetic
audio whose speech and silence are known, and the latency arithmetic on known chunks."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.evaluate.finals import (
    FINAL_SILENCE_MS,
    final_summary,
    phrase_timing,
    speech_bounds,
)
from sweep.evaluate.metrics import summary_spread

RATE = 8000


def _call(lead_s: float, speech_s: float, tail_s: float, noise_db: float | None,
          seed: int = 0) -> np.ndarray:
    """Silence (digital, or noise at ``noise_db`` dBFS), a voiced stretch (a 200 Hz tone
    with harmonics, amplitude-modulated like syllables), silence again."""
    rng = np.random.default_rng(seed)
    n = int((lead_s + speech_s + tail_s) * RATE)
    noise = np.zeros(n) if noise_db is None else \
        rng.normal(0, 32768 * 10 ** (noise_db / 20), n)
    t = np.arange(int(speech_s * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 200 * h * t) / h for h in (1, 2, 3))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2
    start = int(lead_s * RATE)
    signal = noise.copy()
    signal[start:start + t.size] += 6000 * voice * syllables
    return np.clip(signal, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("noise_db", [None, -60.0, -40.0])
def test_the_energy_rule_finds_where_the_speech_ends(noise_db: float | None) -> None:
    bounds = speech_bounds(_call(0.4, 1.2, 0.9, noise_db), RATE)
    assert bounds is not None
    start, end = bounds
    assert start == pytest.approx(0.4, abs=0.02)
    assert end == pytest.approx(1.6, abs=0.02)


def test_silence_or_steady_noise_has_no_speech() -> None:
    assert speech_bounds(np.zeros(RATE, np.int16), RATE) is None
    rng = np.random.default_rng(1)
    assert speech_bounds(rng.normal(0, 300, RATE).astype(np.int16), RATE) is None


def test_the_final_transcript_waits_for_the_splitter_silence_and_the_chunk() -> None:
    # 400 ms chunks; speech ends at 1.5 s; the phrase is final at 2.1 s (600 ms later),
    # inside chunk 5 ([2.0, 2.4)), whose answer came 30 ms after its audio ended.
    latencies = [10.0, 11.0, 12.0, 13.0, 14.0, 30.0, 15.0]
    timing = phrase_timing((0.5, 1.5), audio_s=2.8, chunk_s=0.4, latencies_ms=latencies)
    assert timing.final_chunk == 5
    assert timing.final_latency_ms == pytest.approx((2.4 - 1.5) * 1000 + 30.0)
    assert timing.final_latency_ms >= FINAL_SILENCE_MS
    assert not timing.at_stream_end
    # Partial results: the chunks that carry speech, 1 to 3 ([0.4, 1.6)).
    assert timing.partial_latencies_ms == (11.0, 12.0, 13.0)


def test_a_shorter_silence_and_the_stream_end_close_the_phrase_sooner() -> None:
    latencies = [10.0] * 5
    short = phrase_timing((0.5, 1.5), 2.0, 0.4, latencies, silence_ms=300.0)
    assert short.final_chunk == 4 and short.final_latency_ms == pytest.approx(510.0)
    # The audio ends 200 ms after the speech: the end of the stream makes it final.
    ended = phrase_timing((0.5, 1.8), 2.0, 0.4, latencies)
    assert ended.at_stream_end and ended.final_chunk == 4
    assert ended.final_latency_ms == pytest.approx(210.0)


def test_summary_and_spread_across_passes() -> None:
    fast = [phrase_timing((0.5, 1.5), 2.8, 0.4, [5.0] * 7)]
    slow = [phrase_timing((0.5, 1.5), 2.8, 0.4, [50.0] * 7)]
    pooled = final_summary(fast + slow)
    assert set(pooled) >= {"final_latency_p50_ms", "final_latency_p95_ms",
                           "final_latency_p99_ms", "partial_latency_p95_ms"}
    spread = summary_spread([final_summary(fast), final_summary(slow)])
    assert spread["final_latency_p95_ms_min"] == pytest.approx(905.0)
    assert spread["final_latency_p95_ms_max"] == pytest.approx(950.0)
    assert final_summary([]) == {}


def test_only_a_paced_run_has_phrase_timings_on_the_padded_clock() -> None:
    from pathlib import Path

    from sweep.data.manifest import Utterance
    from sweep.evaluate.stream import StreamRun, UtteranceResult, padded_speech
    from sweep.model import Contract, ModelInterface, StatePair

    model = ModelInterface(name="m", onnx_path=Path("/nowhere.onnx"),
                           contract=Contract.MONOLITHIC, audio_input="signal",
                           logprobs_output="logprobs", states=(StatePair("s", "s_next"),))
    speech, audio_s = padded_speech(model, _call(0.4, 1.2, 0.9, None))
    assert speech is not None
    # The client's 300 ms pad moves the speech; the audio is padded to whole chunks.
    assert speech[1] == pytest.approx(0.3 + 1.6, abs=0.02)
    assert audio_s == pytest.approx(3.2)  # 2.5 s + 0.6 s of pads -> 8 chunks of 0.4 s
    result = UtteranceResult(Utterance(id="u", audio_path=Path("/u.wav"), text="x",
                                       duration=2.5), np.zeros((80, 35)), [20.0] * 8,
                             speech=speech, audio_s=audio_s)
    paced = StreamRun([result], 3.2, 1, pacing="realtime", chunk_s=0.4)
    (timing,) = paced.phrase_timings()
    assert timing.final_chunk == 6  # 1.9 + 0.6 = 2.5 s lies in [2.4, 2.8)
    assert timing.final_latency_ms == pytest.approx((2.8 - speech[1]) * 1000 + 20.0)
    assert StreamRun([result], 1.0, 1, pacing="none", chunk_s=0.4).phrase_timings() == []
