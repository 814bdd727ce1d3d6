"""WER and CER of a test set by voice and by SNR band: the README's table.

Reads the manifest's ``voice_group`` and ``snr_db`` (written by ``demo.synth``) and scores
hypotheses from a sweep run's ``transcripts.csv`` (what Triton returned), or from the ONNX
file streamed in-process (``--onnx``, the reference), with the sweep's own scorer.

    python -m demo.breakdown --dataset demo/assets/data/demo_test \\
        --onnx demo/assets/demo_monolithic.onnx --transcripts greedy=RUN/transcripts.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.data.manifest import MANIFEST_NAME
from sweep.evaluate.metrics import score

SNR_BANDS: tuple[tuple[str, float, float], ...] = (
    ("5-10 dB", 5.0, 10.0), ("10-20 dB", 10.0, 20.0), ("20-30 dB", 20.0, 30.0))


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    voice_group: str
    snr_db: float | None


def read_rows(dataset: Path) -> list[Row]:
    rows = []
    with (dataset / MANIFEST_NAME).open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows.append(Row(Path(r["audio_filepath"]).stem, r["text"],
                            r.get("voice_group", "unknown"), r.get("snr_db")))
    return rows


def snr_band(snr: float | None) -> str:
    if snr is None:
        return "no noise"
    return next((name for name, low, high in SNR_BANDS if low <= snr < high), f"{snr:.0f} dB")


def read_transcripts(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as f:
        return {r["id"]: r["hypothesis"] for r in csv.DictReader(f)}


def groups(rows: Sequence[Row]) -> list[tuple[str, Callable[[Row], bool]]]:
    out: list[tuple[str, Callable[[Row], bool]]] = [("all", lambda r: True)]
    for voice in sorted({r.voice_group for r in rows}):
        out.append((f"voice {voice}", lambda r, v=voice: r.voice_group == v))
    for band in ["no noise", *(name for name, _, _ in SNR_BANDS)]:
        out.append((f"SNR {band}", lambda r, b=band: snr_band(r.snr_db) == b))
    return out


def table(rows: Sequence[Row], hypotheses: dict[str, dict[str, str]]) -> str:
    names = list(hypotheses)
    head = "| subset | utterances | " + " | ".join(f"{n} WER | {n} CER" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for label, keep in groups(rows):
        subset = [r for r in rows if keep(r)]
        if not subset:
            continue
        cells = []
        for n in names:
            s = score([r.text for r in subset], [hypotheses[n][r.id] for r in subset])
            cells.append(f"{100 * s.wer:.1f} % | {100 * s.cer:.1f} %")
        lines.append(f"| {label} | {len(subset)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, help="stream this export in-process (greedy)")
    parser.add_argument("--transcripts", nargs="*", default=[],
                        help="NAME=transcripts.csv of a sweep run")
    args = parser.parse_args(argv)
    rows = read_rows(args.dataset)
    hypotheses: dict[str, dict[str, str]] = {}
    if args.onnx:
        from demo.export import transcribe_onnx

        pairs = transcribe_onnx(args.onnx, args.dataset)
        hypotheses["in-process greedy"] = {r.id: h for r, (_, h) in zip(rows, pairs,
                                                                        strict=True)}
    for item in args.transcripts:
        name, _, path = item.partition("=")
        hypotheses[name] = read_transcripts(Path(path))
    if not hypotheses:
        parser.error("give --onnx or --transcripts")
    print(table(rows, hypotheses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
