"""A telephone channel for synthetic speech: noise, speed, the 300-3400 Hz band, gain with
clipping and a G.711 round trip, done by sox.

Background noise is added at a chosen SNR first (it reaches the handset's microphone with
the speech), then sox applies speed perturbation, the telephone band, a gain change that may
clip, and encodes to 8-bit u-law or A-law (G.711) at 8 kHz; reading the file back decodes
it. Every setting is drawn from a seeded ``random.Random``, so an utterance's channel is a
pure function of its seed. Training and test draw from different ranges (``PROFILES``).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

SAMPLE_RATE = 8000
CODECS = ("u-law", "a-law", "pcm")
NOISES = ("white", "pink", "brown")
SOX_ENV = "SOX"


class ChannelError(RuntimeError):
    """sox is missing or refused an utterance."""


@dataclass(frozen=True)
class Channel:
    """One utterance's channel; ``snr_db`` None means no added noise."""

    snr_db: float | None
    noise: str
    speed: float
    band_hz: tuple[float, float]
    gain_db: float
    codec: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["band_hz"] = list(self.band_hz)
        return d


@dataclass(frozen=True)
class Profile:
    """Ranges a channel is drawn from."""

    snr_bands_db: tuple[tuple[float, float] | None, ...]
    speed: tuple[float, float]
    low_hz: tuple[float, float]
    high_hz: tuple[float, float]
    gain_db: tuple[float, float]
    codec_weights: tuple[float, float, float]


PROFILES: dict[str, Profile] = {
    # Training: wide ranges, some clean and some wideband-ish speech so the model does not
    # depend on one line.
    "train": Profile(snr_bands_db=(None, (25.0, 40.0), (15.0, 25.0), (5.0, 15.0)),
                     speed=(0.9, 1.1), low_hz=(150.0, 400.0), high_hz=(3000.0, 3800.0),
                     gain_db=(-8.0, 10.0), codec_weights=(0.4, 0.4, 0.2)),
    # Test: the ITU telephone band, always G.711, and SNR bands evenly used so each band
    # has enough utterances for its own WER.
    "test": Profile(snr_bands_db=(None, (20.0, 30.0), (10.0, 20.0), (5.0, 10.0)),
                    speed=(0.95, 1.05), low_hz=(300.0, 300.0), high_hz=(3400.0, 3400.0),
                    gain_db=(-6.0, 9.0), codec_weights=(0.5, 0.5, 0.0)),
}


def draw(rng: random.Random, profile: str) -> Channel:
    p = PROFILES[profile]
    band = rng.choice(p.snr_bands_db)
    codec = rng.choices(CODECS, weights=p.codec_weights)[0]
    return Channel(
        snr_db=None if band is None else round(rng.uniform(*band), 2),
        noise=rng.choice(NOISES),
        speed=round(rng.uniform(*p.speed), 3),
        band_hz=(round(rng.uniform(*p.low_hz)), round(rng.uniform(*p.high_hz))),
        gain_db=round(rng.uniform(*p.gain_db), 2),
        codec=codec,
    )


def find_sox(executable: str | None = None) -> str:
    exe = executable or os.environ.get(SOX_ENV) or shutil.which("sox")
    if not exe or not (shutil.which(exe) or Path(exe).is_file()):
        raise ChannelError("sox not found: install it (apt-get install sox) or give its path "
                           f"in ${SOX_ENV}")
    return exe


def _noise(kind: str, n: int, gen: np.random.Generator) -> np.ndarray:
    white = gen.standard_normal(n)
    if kind == "white":
        return white
    if kind == "brown":
        return lfilter([1.0], [1.0, -0.995], white)
    # Pink: Paul Kellet's economy filter, a -3 dB/octave slope over the speech band.
    return lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                   [1.0, -2.494956002, 2.017265875, -0.522189400], white)


def add_noise(audio: np.ndarray, channel: Channel, gen: np.random.Generator) -> np.ndarray:
    if channel.snr_db is None:
        return audio
    noise = _noise(channel.noise, audio.size, gen)
    speech_power = float(np.mean(audio**2)) or 1e-12
    noise *= np.sqrt(speech_power / 10 ** (channel.snr_db / 10) / (np.mean(noise**2) or 1.0))
    return (audio + noise).astype(np.float32)


def sox_command(sox: str, channel: Channel, src: str, dst: str) -> list[str]:
    low, high = channel.band_hz
    encoding = ["-e", channel.codec, "-b", "8"] if channel.codec != "pcm" else ["-b", "16"]
    # -V1: sox warns on every clipped sample; clipping is intended here. -D: no dither (sox
    # dithers with a random seed when it reduces bit depth; a G.711 codec does not dither).
    return [sox, "-V1", "-D", src, "-r", str(SAMPLE_RATE), *encoding, dst,
            # speed changes the rate: resample to 8 kHz before the band is cut.
            "speed", f"{channel.speed}", "rate", str(SAMPLE_RATE),
            "sinc", f"{low}-{high}", "gain", f"{channel.gain_db}"]


def apply(audio: np.ndarray, sample_rate: int, channel: Channel, seed: int,
          sox: str | None = None) -> np.ndarray:
    """``audio`` (float, any rate) through ``channel``: int16 at 8 kHz."""
    exe = find_sox(sox)
    gen = np.random.default_rng(seed)
    noisy = add_noise(np.asarray(audio, dtype=np.float32), channel, gen)
    with tempfile.TemporaryDirectory(prefix="channel-") as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        sf.write(src, noisy, sample_rate, subtype="FLOAT")
        proc = subprocess.run(sox_command(exe, channel, src, dst), capture_output=True,
                              check=False, timeout=60)
        if proc.returncode != 0:
            raise ChannelError(f"sox failed ({proc.returncode}) for {channel}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        decoded, rate = sf.read(dst, dtype="float32")
    if rate != SAMPLE_RATE:
        raise ChannelError(f"sox wrote {rate} Hz, expected {SAMPLE_RATE}")
    return np.clip(np.round(decoded * 32767.0), -32768, 32767).astype(np.int16)
