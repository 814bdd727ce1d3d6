"""CTC decoders: one protocol, greedy in-process, beam search with KenLM (pyctcdecode)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from sweep.errors import ConfigError
from sweep.text import BLANK_ID, VOCABULARY


class Decoder(Protocol):
    name: str

    def decode(self, logprobs: np.ndarray) -> str:
        """Text of one utterance's (frames, classes) log-probabilities."""
        ...


def collapse(ids: np.ndarray, blank_id: int = BLANK_ID) -> list[int]:
    """CTC best path: merge repeats, then drop blanks."""
    if ids.size == 0:
        return []
    keep = np.ones(ids.shape, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return [int(i) for i in ids[keep] if i != blank_id]


class GreedyDecoder:
    name = "greedy"

    def __init__(self, vocabulary: tuple[str, ...] = VOCABULARY, blank_id: int = BLANK_ID
                 ) -> None:
        self.vocabulary = vocabulary
        self.blank_id = blank_id

    def decode(self, logprobs: np.ndarray) -> str:
        ids = collapse(np.asarray(logprobs).argmax(axis=-1), self.blank_id)
        return " ".join("".join(self.vocabulary[i] for i in ids).split())


class BeamDecoder:
    """pyctcdecode beam search with a KenLM model (the seed's width 200, alpha 0.4, beta 0.9)."""

    name = "beam"

    def __init__(self, kenlm_path: str | Path | None, beam_width: int = 200, alpha: float = 0.4,
                 beta: float = 0.9, vocabulary: tuple[str, ...] = VOCABULARY) -> None:
        from pyctcdecode import build_ctcdecoder

        if kenlm_path is not None and not Path(kenlm_path).is_file():
            raise ConfigError(f"decoder.kenlm_path={kenlm_path} does not exist; expected an "
                              "ARPA or KenLM binary model (the demo's: demo/assets/lm_3gram.arpa).")
        # pyctcdecode wants "" for the blank, which is the last class here.
        labels = [*vocabulary, ""]
        self.beam_width = beam_width
        self._decoder = build_ctcdecoder(labels, kenlm_model_path=str(kenlm_path)
                                         if kenlm_path else None, alpha=alpha, beta=beta)

    def decode(self, logprobs: np.ndarray) -> str:
        text = self._decoder.decode(np.asarray(logprobs, dtype=np.float32),
                                    beam_width=self.beam_width)
        return " ".join(text.split())


def make_decoder(name: str, **options: object) -> Decoder:
    if name == "greedy":
        return GreedyDecoder()
    if name == "beam":
        return BeamDecoder(**options)  # type: ignore[arg-type]
    raise ConfigError(f"decoder={name!r} is unknown; expected greedy or beam.")
