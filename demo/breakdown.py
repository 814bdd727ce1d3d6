"""WER and CER of a test set by voice and by SNR band: the README's table.

Reads the manifest's ``voice_group`` and ``snr_db`` (written by ``demo.synth``) and scores
hypotheses from a sweep run's ``transcripts.csv`` (what Triton returned), or from the ONNX
file streamed in-process (``--onnx``, the reference), with the sweep's own scorer.

    python -m demo.breakdown --dataset demo/assets/data/demo_test \\
        --onnx demo/assets/demo_monolithic.onnx --transcripts greedy=RUN/transcripts.csv

``--words`` adds where the word errors are: reference words that occur in the training
text against those it never holds, and how many wrong spellings of a word eSpeak's Russian
pronounces exactly as the word itself (no model can hear those apart in eSpeak's audio).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from sweep.data.manifest import MANIFEST_NAME
from sweep.data.text import normalize
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


def _voice_is(voice: str) -> Callable[[Row], bool]:
    return lambda r: r.voice_group == voice


def _band_is(band: str) -> Callable[[Row], bool]:
    return lambda r: snr_band(r.snr_db) == band


def groups(rows: Sequence[Row]) -> list[tuple[str, Callable[[Row], bool]]]:
    out: list[tuple[str, Callable[[Row], bool]]] = [("all", lambda r: True)]
    for voice in sorted({r.voice_group for r in rows}):
        out.append((f"voice {voice}", _voice_is(voice)))
    for band in ["no noise", *(name for name, _, _ in SNR_BANDS)]:
        out.append((f"SNR {band}", _band_is(band)))
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


# -- by word --------------------------------------------------------------------------------

SEEN, TEST_ONLY, OTHER = "in training text", "test-only lexicon word", "other unseen"
WORD_KINDS = (SEEN, TEST_ONLY, OTHER)


@dataclass
class WordTally:
    """Reference words of one kind: how many, how many wrong (substituted or deleted), how
    many replaced one for one by another word, and how many of those by a homophone."""

    tokens: int = 0
    wrong: int = 0
    swaps: list[tuple[str, str]] = field(default_factory=list)
    homophones: int = 0


def tally_words(references: Sequence[str], hypotheses: Sequence[str],
                kind_of: Callable[[str], str]) -> tuple[dict[str, WordTally], int]:
    """Per word kind, from jiwer's alignment of the normalised texts; and the insertions."""
    tallies = {kind: WordTally() for kind in WORD_KINDS}
    inserted = 0
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    out = jiwer.process_words([r for r, _ in kept], [h for _, h in kept])
    for ref_words, hyp_words, chunks in zip(out.references, out.hypotheses, out.alignments,
                                            strict=True):
        for c in chunks:
            if c.type == "insert":
                inserted += c.hyp_end_idx - c.hyp_start_idx
                continue
            one_for_one = c.type == "substitute" and (
                c.hyp_end_idx - c.hyp_start_idx == c.ref_end_idx - c.ref_start_idx)
            for k in range(c.ref_end_idx - c.ref_start_idx):
                word = ref_words[c.ref_start_idx + k]
                t = tallies[kind_of(word)]
                t.tokens += 1
                if c.type == "equal":
                    continue
                t.wrong += 1
                if one_for_one:
                    t.swaps.append((word, hyp_words[c.hyp_start_idx + k]))
    return tallies, inserted


def espeak_phonemes(words: Iterable[str]) -> dict[str, str]:
    from demo.synth import find_espeak

    return find_espeak().phonemes(words)


def count_homophones(tallies: dict[str, WordTally], said: Mapping[str, str]) -> None:
    """``said``: the phonemes of every word in the tallies' swaps."""
    for t in tallies.values():
        t.homophones = sum(said[ref] == said[hyp] for ref, hyp in t.swaps)


def word_table(subsets: dict[str, tuple[dict[str, WordTally], int]]) -> str:
    """A row per (subset, word kind); WER points are the share of the subset's words."""
    lines = ["| subset | reference words | tokens | wrong | WER points | replaced one for one "
             "| by a homophone |", "|---|---|---|---|---|---|---|"]
    for label, (tallies, inserted) in subsets.items():
        total = max(1, sum(t.tokens for t in tallies.values()))
        for kind, t in tallies.items():
            if t.tokens:
                lines.append(f"| {label} | {kind} | {t.tokens} | {t.wrong} "
                             f"({100 * t.wrong / t.tokens:.1f} %) | {100 * t.wrong / total:.1f}"
                             f" | {len(t.swaps)} | {t.homophones} |")
        lines.append(f"| {label} | inserted | | {inserted} | {100 * inserted / total:.1f} | | |")
    return "\n".join(lines)


def word_kinds(train_sentences: int, train_seed: int) -> Callable[[str], str]:
    """Classify a normalised word against the training text ``demo.synth`` speaks
    (``generate_sentences(train_sentences, train_seed, "train")``) and the lexicon's
    test-only words."""
    from demo.lexicon import load_lexicon
    from demo.texts import generate_sentences

    seen = {w for s in generate_sentences(train_sentences, train_seed, "train")
            for w in normalize(s).split()}
    test_only = {normalize(w) for w in load_lexicon().test_only}
    return lambda w: SEEN if w in seen else TEST_ONLY if w in test_only else OTHER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, help="stream this export in-process (greedy)")
    parser.add_argument("--transcripts", nargs="*", default=[],
                        help="NAME=transcripts.csv of a sweep run")
    parser.add_argument("--words", action="store_true",
                        help="also the errors by word: seen in training text or not, homophones")
    parser.add_argument("--train-sentences", type=int, default=80_000,
                        help="how many training sentences the model was trained on (--words)")
    parser.add_argument("--train-seed", type=int, default=1,
                        help="their demo.synth seed (--words)")
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
    if args.words:
        kind_of = word_kinds(args.train_sentences, args.train_seed)
        by_voice = [(label, keep) for label, keep in groups(rows)
                    if label == "all" or label.startswith("voice ")]
        for name, hyps in hypotheses.items():
            subsets = {}
            for label, keep in by_voice:
                subset = [r for r in rows if keep(r)]
                subsets[label] = tally_words([r.text for r in subset],
                                             [hyps[r.id] for r in subset], kind_of)
            # One espeak-ng call for every wrong spelling of this set's transcripts.
            said = espeak_phonemes(w for tallies, _ in subsets.values()
                                   for t in tallies.values() for pair in t.swaps for w in pair)
            for tallies, _ in subsets.values():
                count_homophones(tallies, said)
            print(f"\n{name}, by word:\n{word_table(subsets)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
