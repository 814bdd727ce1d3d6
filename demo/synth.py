"""Synthesise the demo's telephony dataset with espeak-ng.

Each utterance gets its own seeded voice, rate, pitch, word gap, pauses, level and noise,
derived from (seed, index) alone, so the output does not depend on ``--jobs``. Audio is
resampled to 8 kHz 16-bit mono, the rate T-one expects, and written beside a
``tarred_audio_manifest.json`` in the layout the seed's WER client reads.

The espeak-ng executable and its data may come from unpacked .deb files on another machine:
give them with ``--espeak-ng``/``--espeak-data`` or the ``ESPEAK_NG``/``ESPEAK_DATA_PATH``
environment variables.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TypedDict

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from demo.texts import SPLITS, generate_sentences

SAMPLE_RATE = 8000
MANIFEST_NAME = "tarred_audio_manifest.json"
FORMATS = ("wav", "flac")

# Russian base voice with eSpeak's variants: male, female and the Klatt synthesiser family.
VOICES: tuple[str, ...] = (
    "ru",
    *(f"ru+m{i}" for i in range(1, 9)),
    *(f"ru+f{i}" for i in range(1, 6)),
    "ru+klatt", "ru+klatt2", "ru+klatt3", "ru+klatt4", "ru+klatt6",
    "ru+croak", "ru+Denis", "ru+boris", "ru+grandma", "ru+steph", "ru+Annie", "ru+max",
    "ru+Andy", "ru+linda", "ru+victor", "ru+travis",
)


class ManifestRow(TypedDict):
    audio_filepath: str
    text: str
    duration: float


@dataclass(frozen=True)
class Espeak:
    """Where espeak-ng lives; ``data_parent`` holds the ``espeak-ng-data`` folder."""

    executable: str
    data_parent: str | None = None
    library_path: str | None = None

    def command(self, text: str, voice: str, rate: int, pitch: int, gap: int,
                wav_path: str) -> list[str]:
        cmd = [self.executable, "-v", voice, "-s", str(rate), "-p", str(pitch),
               "-g", str(gap), "-w", wav_path]
        if self.data_parent:
            cmd.append(f"--path={self.data_parent}")
        # Text is the last argument; normalised text never starts with "-".
        cmd.append(text)
        return cmd

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.data_parent:
            env["ESPEAK_DATA_PATH"] = self.data_parent
        if self.library_path:
            old = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = self.library_path + (f":{old}" if old else "")
        return env


def find_espeak(executable: str | None = None, data_path: str | None = None) -> Espeak:
    """Resolve espeak-ng from arguments, then the environment, then ``PATH``.

    ``data_path`` may name ``espeak-ng-data`` itself or the folder that contains it (what
    espeak-ng's ``--path`` wants). For an executable unpacked from a .deb
    (``ROOT/usr/bin/espeak-ng``), ``ROOT/usr/lib/<triplet>`` is put on ``LD_LIBRARY_PATH``
    so its libespeak-ng is found.
    """
    exe = executable or os.environ.get("ESPEAK_NG") or shutil.which("espeak-ng")
    if not exe or not (shutil.which(exe) or Path(exe).is_file()):
        raise SystemExit(
            "espeak-ng not found: install it (apt-get install espeak-ng) or give its path "
            "with --espeak-ng or the ESPEAK_NG environment variable"
        )
    data = data_path or os.environ.get("ESPEAK_DATA_PATH")
    parent: str | None = None
    if data:
        folder = Path(data)
        parent = str(folder.parent if folder.name == "espeak-ng-data" else folder)
        if not (Path(parent) / "espeak-ng-data").is_dir():
            raise SystemExit(f"no espeak-ng-data folder in {parent} (from {data})")
    lib_dirs: list[str] = []
    exe_path = Path(shutil.which(exe) or exe).resolve()
    if exe_path.parent.name == "bin" and not str(exe_path).startswith("/usr/bin"):
        usr = exe_path.parent.parent
        lib_dirs = [str(p) for p in sorted((usr / "lib").glob("*-linux-gnu")) if p.is_dir()]
        lib_dirs += [str(usr / "lib")] if (usr / "lib").is_dir() else []
    return Espeak(str(exe_path), parent, ":".join(lib_dirs) or None)


@dataclass(frozen=True)
class Job:
    index: int
    text: str
    seed: int
    split: str
    out_dir: str
    fmt: str
    espeak: Espeak


def file_name(split: str, seed: int, index: int, fmt: str) -> str:
    return f"{split}_s{seed}_{index:06d}.{fmt}"


def _speak(espeak: Espeak, text: str, rng: random.Random, tmp_dir: str) -> tuple[np.ndarray, int]:
    voice = rng.choice(VOICES)
    rate = rng.randint(115, 180)
    pitch = rng.randint(25, 75)
    gap = rng.choice((0, 0, 0, 1, 2, 3, 5, 8))
    wav_path = os.path.join(tmp_dir, "speech.wav")
    cmd = espeak.command(text, voice, rate, pitch, gap, wav_path)
    proc = subprocess.run(cmd, env=espeak.env(), capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"espeak-ng failed ({proc.returncode}) for voice {voice}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    audio, rate_in = sf.read(wav_path, dtype="float32", always_2d=True)
    return audio[:, 0], int(rate_in)


def _telephone_band(audio: np.ndarray, rng: random.Random) -> np.ndarray:
    # A varied band-pass mimics different handsets and lines.
    low = rng.uniform(150.0, 350.0)
    high = rng.uniform(3200.0, 3800.0)
    sos = butter(4, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def render(text: str, seed: int, index: int, espeak: Espeak, tmp_dir: str) -> np.ndarray:
    """The int16 8 kHz waveform of one utterance; a pure function of its arguments."""
    rng = random.Random(f"trt-sweep-demo-synth:{seed}:{index}")
    speech, rate_in = _speak(espeak, text, rng, tmp_dir)
    g = gcd(SAMPLE_RATE, rate_in)
    speech = resample_poly(speech, SAMPLE_RATE // g, rate_in // g).astype(np.float32)
    if rng.random() < 0.7:
        speech = _telephone_band(speech, rng)
    peak = float(np.max(np.abs(speech))) or 1.0
    speech *= 10 ** (rng.uniform(-14.0, -1.0) / 20) / peak
    lead = np.zeros(int(rng.uniform(0.05, 0.6) * SAMPLE_RATE), np.float32)
    tail = np.zeros(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE), np.float32)
    audio = np.concatenate([lead, speech, tail])
    speech_power = float(np.mean(speech**2)) or 1e-12
    snr_db = rng.uniform(20.0, 40.0)
    noise = np.random.default_rng(rng.getrandbits(64)).standard_normal(audio.size)
    audio += (noise * np.sqrt(speech_power / 10 ** (snr_db / 10))).astype(np.float32)
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _run_job(job: Job) -> ManifestRow:
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp_dir:
        audio = render(job.text, job.seed, job.index, job.espeak, tmp_dir)
    name = file_name(job.split, job.seed, job.index, job.fmt)
    sf.write(os.path.join(job.out_dir, name), audio, SAMPLE_RATE, subtype="PCM_16",
             format=job.fmt.upper())
    duration = round(audio.size / SAMPLE_RATE, 3)
    return ManifestRow(audio_filepath=name, text=job.text, duration=duration)


def synthesise(split: str, n: int, seed: int, out_dir: Path, *, jobs: int = 1, fmt: str = "wav",
               espeak: Espeak | None = None, progress: bool = True) -> list[ManifestRow]:
    """Generate ``n`` utterances of ``split`` into ``out_dir`` and write its manifest."""
    espeak = espeak or find_espeak()
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = generate_sentences(n, seed, split)
    work = [Job(i, t, seed, split, str(out_dir), fmt, espeak) for i, t in enumerate(texts)]
    rows: list[ManifestRow] = []
    start = time.monotonic()
    with multiprocessing.Pool(max(1, jobs)) as pool:
        for row in pool.imap(_run_job, work, chunksize=8):
            rows.append(row)
            if progress and len(rows) % 500 == 0:
                _report(len(rows), n, rows, start)
    manifest = out_dir / MANIFEST_NAME
    with manifest.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if progress:
        _report(len(rows), n, rows, start)
    return rows


def _report(done: int, total: int, rows: list[ManifestRow], start: float) -> None:
    audio_s = sum(r["duration"] for r in rows)
    wall = max(time.monotonic() - start, 1e-9)
    print(f"{done}/{total} utterances, {audio_s / 3600:.2f} h audio, "
          f"{audio_s / wall:.1f} audio s per wall s", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Synthesise the demo telephony dataset.")
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--n", type=int, required=True, help="number of utterances")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="BASE/DATASET folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--format", choices=FORMATS, default="wav")
    parser.add_argument("--espeak-ng", help="espeak-ng executable (default: $ESPEAK_NG, PATH)")
    parser.add_argument("--espeak-data",
                        help="espeak-ng-data folder or its parent (default: $ESPEAK_DATA_PATH)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    espeak = find_espeak(args.espeak_ng, args.espeak_data)
    synthesise(args.split, args.n, args.seed, args.out, jobs=args.jobs, fmt=args.format,
               espeak=espeak)


if __name__ == "__main__":
    main()
