"""The telephone channel, run through the real sox: band, G.711, noise, gain, speed."""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from demo import channel
from demo.channel import Channel, ChannelError

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
RATE = 8000


def _chirp(seconds: float = 2.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    # 50 Hz to 3.95 kHz: energy in and out of the telephone band.
    return (level * np.sin(2 * np.pi * (50 * t + (3900 / (2 * seconds)) * t**2))).astype(
        np.float32)


def _line(**changes: Any) -> Channel:
    base = Channel(snr_db=None, noise="white", speed=1.0, band_hz=(300, 3400), gain_db=0.0,
                   codec="u-law")
    return dataclasses.replace(base, **changes)


def _band_share(audio: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_the_channel_is_a_pure_function_of_its_seed() -> None:
    line = channel.draw(random.Random(3), "train")
    assert line == channel.draw(random.Random(3), "train")
    a = channel.apply(_chirp(), RATE, line, seed=5)
    assert np.array_equal(a, channel.apply(_chirp(), RATE, line, seed=5))
    assert a.dtype == np.int16


def test_the_band_is_cut_to_300_3400_hz() -> None:
    out = channel.apply(_chirp(), RATE, _line(codec="pcm"), seed=0).astype(np.float32)
    chirp = _chirp()
    assert _band_share(chirp, 3600, 4000) > 0.04
    assert _band_share(out, 3600, 4000) < 0.002
    assert _band_share(out, 0, 200) < 0.002 < _band_share(chirp, 0, 200)


def test_g711_leaves_256_levels() -> None:
    for codec in ("u-law", "a-law"):
        out = channel.apply(_chirp(), RATE, _line(codec=codec), seed=0)
        assert len(np.unique(out)) <= 256, codec
    assert len(np.unique(channel.apply(_chirp(), RATE, _line(codec="pcm"), seed=0))) > 256


def test_noise_is_added_at_the_drawn_snr() -> None:
    clean = np.zeros(RATE * 2, np.float32)
    clean[::2] = 0.1
    for kind in channel.NOISES:
        noisy = channel.add_noise(clean, _line(snr_db=10.0, noise=kind), np.random.default_rng(0))
        noise = noisy - clean
        snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
        assert snr == pytest.approx(10.0, abs=0.01), kind


def test_gain_clips_and_speed_changes_length() -> None:
    loud = channel.apply(_chirp(level=0.5), RATE, _line(gain_db=12.0, codec="pcm"), seed=0)
    assert np.abs(loud).max() >= 32000  # clipped at full scale
    fast = channel.apply(_chirp(), RATE, _line(speed=1.1), seed=0)
    assert fast.size == pytest.approx(_chirp().size / 1.1, rel=0.01)


def test_missing_sox_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(channel.SOX_ENV, str(tmp_path / "sox"))
    with pytest.raises(ChannelError, match=r"sox not found: install it \(apt-get install sox\)"):
        channel.apply(_chirp(), RATE, _line(), seed=0)
