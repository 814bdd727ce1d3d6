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
from collections.abc import Iterable
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TypedDict

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from demo import accents, channel
from demo.texts import SPLITS, generate_sentences

SAMPLE_RATE = 8000
MANIFEST_NAME = "tarred_audio_manifest.json"
FORMATS = ("wav", "flac")

# Every eSpeak variant (``espeak-ng --voices=variant``, espeak-ng 1.51), on Russian's two
# base voices. ``ru-lv`` (Russian as spoken in Latvia) is never used for training: it is the
# test set's held-out voice, with any variant.
_VARIANT_LISTING = """
adam Alex Alicia Andrea Andy Annie antonio aunty belinda benjamin boris caleb david Demonic
Denis Diogo ed edward edward2 Gene Gene2 gustave announcer Henrique Hugo iven iven2 iven3
iven4 Jacky john kaukovalta Lee linda marcelo Marco Mario max Michael michel miguel Mike Mr
Nguyen pablo paul pedro quincy RicishayMax RicishayMax2 RicishayMax3 rob robert robosoft
robosoft2 robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 steph steph2 steph3
Storm Tweaky UniRobot zac anika anikaRobot AnxiousAndy fast f2 f3 f4 f5 whisperf grandpa
klatt klatt2 klatt3 klatt4 klatt5 klatt6 m2 m3 m4 m5 m6 m7 norbert sandro shelby travis
victor whisper m8 f1 croak m1 grandma
"""
ESPEAK_VARIANTS: tuple[str, ...] = tuple(_VARIANT_LISTING.split())
TRAIN_BASE = "ru"
HELD_OUT_BASE = "ru-lv"
# festival's msu_ru_nsh_clunits: unit selection from a real speaker's recordings.
FESTIVAL = "festival"
ACCENT = "espeak-accent"  # Russian read by Ukrainian and Bulgarian eSpeak (demo/accents.py)
VOICE_KINDS = ("espeak", "espeak-held-out", FESTIVAL, ACCENT)
# Voice shares per split, in VOICE_KINDS order. The test's accent share is 0 (and last), so
# its voices are drawn exactly as they were before accents existed.
VOICE_SHARES = {"train": (0.77, 0.0, 0.08, 0.15), "test": (0.55, 0.3, 0.15, 0.0)}
# Opus level of the festival cache per split: the training split's speech travels to a GPU
# machine, so it goes at about 8 kbps (a mobile call's narrowband codec); the test split's
# keeps libsndfile's default, with which the committed demo_test was made.
FESTIVAL_OPUS_LEVEL = {"train": 1.0}


class ManifestRow(TypedDict, total=False):
    audio_filepath: str
    text: str
    duration: float
    voice: str
    voice_group: str
    snr_db: float | None
    codec: str


@dataclass(frozen=True)
class Espeak:
    """Where espeak-ng lives; ``data_parent`` holds the ``espeak-ng-data`` folder."""

    executable: str
    data_parent: str | None = None
    library_path: str | None = None

    def _program(self, voice: str) -> list[str]:
        path = [f"--path={self.data_parent}"] if self.data_parent else []
        return [self.executable, *path, "-v", voice]

    def command(self, text: str, voice: str, rate: int, pitch: int, gap: int,
                wav_path: str) -> list[str]:
        # Text is the last argument; normalised text never starts with "-".
        return [*self._program(voice), "-s", str(rate), "-p", str(pitch), "-g", str(gap),
                "-w", wav_path, text]

    def phonemes(self, words: Iterable[str], voice: str = "ru") -> dict[str, str]:
        """eSpeak's phonemes (``-x``, stress marks included) of each word, in one call: a
        word per clause, so one output line each."""
        unique = sorted(set(words))
        if not unique:
            return {}
        out = subprocess.run([*self._program(voice), "-q", "-x", "--stdin"],
                             input="".join(f"{w}.\n" for w in unique), capture_output=True,
                             text=True, check=True, env=self.env())
        lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if len(lines) != len(unique):
            raise RuntimeError(f"espeak-ng gave {len(lines)} phoneme lines for {len(unique)} "
                               "words; expected one each")
        return dict(zip(unique, lines, strict=True))

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
class Voice:
    """Who speaks one utterance and how; a pure function of (split, seed, index)."""

    engine: str  # "espeak" or "festival"
    name: str  # espeak's -v argument, or the festival voice
    group: str  # one of VOICE_KINDS: the README's per-voice rows
    rate: int  # espeak: words per minute; festival: duration stretch in percent
    pitch: int
    gap: int


def plan_voice(split: str, seed: int, index: int) -> Voice:
    rng = random.Random(f"trt-sweep-demo-voice:{split}:{seed}:{index}")
    kind = rng.choices(VOICE_KINDS, weights=VOICE_SHARES[split])[0]
    if kind == FESTIVAL:
        return Voice(FESTIVAL, "msu_ru_nsh_clunits", FESTIVAL, rng.randint(85, 125), 0, 0)
    if kind == ACCENT:
        base = accents.LANGUAGES[rng.randrange(len(accents.LANGUAGES))]
    else:
        base = TRAIN_BASE if kind == "espeak" else HELD_OUT_BASE
    return Voice("espeak", f"{base}+{rng.choice(ESPEAK_VARIANTS)}", kind, rng.randint(115, 185),
                 rng.randint(25, 75), rng.choice((0, 0, 0, 1, 2, 3, 5, 8)))


@dataclass(frozen=True)
class Festival:
    """festival's text2wave engine, run in batch mode (one process for many utterances)."""

    executable: str

    def speak(self, items: list[tuple[str, int, str]]) -> None:
        """Write each (text, duration stretch %, wav path) with the Russian voice."""
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            script = Path(tmp) / "batch.scm"
            lines = ["(voice_msu_ru_nsh_clunits)"]
            for text, stretch, path in items:
                # Normalised text holds letters and spaces only: nothing to escape.
                lines.append(f"(Parameter.set 'Duration_Stretch {stretch / 100:.2f})")
                lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}" '
                             "'riff)")
            script.write_text("\n".join(lines) + "\n", encoding="utf-8")
            proc = subprocess.run([self.executable, "-b", str(script)], capture_output=True,
                                  check=False, timeout=3600)
        missing = [p for _, _, p in items if not Path(p).is_file()]
        if proc.returncode != 0 or missing:
            raise RuntimeError(f"festival failed ({proc.returncode}; {len(missing)} files "
                               f"missing): {proc.stderr.decode(errors='replace').strip()[-400:]}")


def find_festival() -> Festival | None:
    exe = shutil.which("festival")
    if exe is None or not Path("/usr/share/festival/voices/russian").is_dir():
        return None
    return Festival(exe)


@dataclass(frozen=True)
class Job:
    index: int
    text: str
    seed: int
    split: str
    out_dir: str
    fmt: str
    espeak: Espeak
    festival_cache: str


def file_name(split: str, seed: int, index: int, fmt: str) -> str:
    return f"{split}_s{seed}_{index:06d}.{fmt}"


def festival_path(cache: str | Path, split: str, seed: int, index: int) -> Path:
    # Opus keeps carried festival speech small (about 1 KB per audio second at 8 kHz).
    return Path(cache) / file_name(split, seed, index, "ogg")


def _speak(espeak: Espeak, text: str, voice: Voice, tmp_dir: str) -> tuple[np.ndarray, int]:
    wav_path = os.path.join(tmp_dir, "speech.wav")
    if voice.group == ACCENT:
        text = accents.respell(text, voice.name.split("+")[0])
    cmd = espeak.command(text, voice.name, voice.rate, voice.pitch, voice.gap, wav_path)
    proc = subprocess.run(cmd, env=espeak.env(), capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"espeak-ng failed ({proc.returncode}) for voice {voice.name}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    audio, rate_in = sf.read(wav_path, dtype="float32", always_2d=True)
    return audio[:, 0], int(rate_in)


def render(text: str, seed: int, index: int, espeak: Espeak, tmp_dir: str, *,
           split: str = "train", festival_cache: str | Path | None = None,
           ) -> tuple[np.ndarray, Voice, channel.Channel]:
    """The int16 8 kHz waveform of one utterance, its voice and its channel; a pure
    function of its arguments (festival speech is read from ``festival_cache``, see
    ``prerender_festival``)."""
    voice = plan_voice(split, seed, index)
    rng = random.Random(f"trt-sweep-demo-synth:{seed}:{index}")
    if voice.engine == FESTIVAL:
        if festival_cache is None:
            raise RuntimeError("a festival utterance needs festival_cache")
        speech, rate_in = sf.read(festival_path(festival_cache, split, seed, index),
                                  dtype="float32")
    else:
        speech, rate_in = _speak(espeak, text, voice, tmp_dir)
    g = gcd(SAMPLE_RATE, int(rate_in))
    speech = resample_poly(speech, SAMPLE_RATE // g, int(rate_in) // g).astype(np.float32)
    peak = float(np.max(np.abs(speech))) or 1.0
    speech *= 10 ** (rng.uniform(-14.0, -3.0) / 20) / peak
    lead = np.zeros(int(rng.uniform(0.05, 0.6) * SAMPLE_RATE), np.float32)
    tail = np.zeros(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE), np.float32)
    line = channel.draw(rng, split)
    audio = channel.apply(np.concatenate([lead, speech, tail]), SAMPLE_RATE, line,
                          seed=rng.getrandbits(32))
    return audio, voice, line


def prerender_festival(split: str, texts: list[str], seed: int, cache: Path, *,
                       jobs: int = 1, festival: Festival | None = None) -> int:
    """Speak every festival utterance of a split into ``cache`` (Opus, 8 kHz, clean).

    festival and its Russian voice take 250 MB, too much to carry to a GPU machine; their
    speech is rendered where they are installed and carried instead. Returns how many were
    spoken; utterances already in the cache are kept.
    """
    todo = [(i, t) for i, t in enumerate(texts)
            if plan_voice(split, seed, i).engine == FESTIVAL
            and not festival_path(cache, split, seed, i).is_file()]
    if not todo:
        return 0
    festival = festival or find_festival()
    if festival is None:
        raise SystemExit(
            f"{len(todo)} utterances are festival's and {cache} does not hold them: install "
            "festival and festvox-ru (apt-get install festival festvox-ru), or carry a cache "
            "made with --prerender-festival"
        )
    cache.mkdir(parents=True, exist_ok=True)
    groups = [todo[k::max(1, jobs)] for k in range(max(1, jobs))]
    with tempfile.TemporaryDirectory(prefix="festival-wav-") as tmp, \
            multiprocessing.Pool(len(groups)) as pool:
        batches = [[(t, plan_voice(split, seed, i).rate, os.path.join(tmp, f"{i}.wav"))
                    for i, t in group] for group in groups if group]
        pool.map(festival.speak, batches)
        for i, _ in todo:
            speech, rate = sf.read(os.path.join(tmp, f"{i}.wav"), dtype="float32")
            g = gcd(SAMPLE_RATE, int(rate))
            speech = resample_poly(speech, SAMPLE_RATE // g, int(rate) // g)
            sf.write(festival_path(cache, split, seed, i), speech, SAMPLE_RATE,
                     format="OGG", subtype="OPUS",
                     compression_level=FESTIVAL_OPUS_LEVEL.get(split))
    return len(todo)


def _run_job(job: Job) -> ManifestRow:
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp_dir:
        audio, voice, line = render(job.text, job.seed, job.index, job.espeak, tmp_dir,
                             split=job.split, festival_cache=job.festival_cache)
    name = file_name(job.split, job.seed, job.index, job.fmt)
    sf.write(os.path.join(job.out_dir, name), audio, SAMPLE_RATE, subtype="PCM_16",
             format=job.fmt.upper())
    duration = round(audio.size / SAMPLE_RATE, 3)
    return ManifestRow(audio_filepath=name, text=job.text, duration=duration, voice=voice.name,
                       voice_group=voice.group, snr_db=line.snr_db, codec=line.codec)


def synthesise(split: str, n: int, seed: int, out_dir: Path, *, jobs: int = 1, fmt: str = "wav",
               espeak: Espeak | None = None, progress: bool = True,
               festival_cache: Path | None = None) -> list[ManifestRow]:
    """Generate ``n`` utterances of ``split`` into ``out_dir`` and write its manifest."""
    espeak = espeak or find_espeak()
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = generate_sentences(n, seed, split)
    cache = festival_cache or out_dir / ".festival"
    spoken = prerender_festival(split, texts, seed, cache, jobs=jobs)
    if progress and spoken:
        print(f"festival spoke {spoken} utterances into {cache}", file=sys.stderr, flush=True)
    work = [Job(i, t, seed, split, str(out_dir), fmt, espeak, str(cache))
            for i, t in enumerate(texts)]
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
    if festival_cache is None and cache.is_dir():
        shutil.rmtree(cache)
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
    parser.add_argument("--festival-cache", type=Path,
                        help="folder of festival speech (Opus) to read and fill; default: a "
                             "temporary one inside --out")
    parser.add_argument("--prerender-festival", action="store_true",
                        help="only speak the split's festival utterances into --festival-cache")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.prerender_festival:
        if args.festival_cache is None:
            raise SystemExit("--prerender-festival needs --festival-cache")
        texts = generate_sentences(args.n, args.seed, args.split)
        spoken = prerender_festival(args.split, texts, args.seed, args.festival_cache,
                                    jobs=args.jobs)
        print(f"festival spoke {spoken} utterances into {args.festival_cache}")
        return
    espeak = find_espeak(args.espeak_ng, args.espeak_data)
    synthesise(args.split, args.n, args.seed, args.out, jobs=args.jobs, fmt=args.format,
               espeak=espeak, festival_cache=args.festival_cache)


if __name__ == "__main__":
    main()
