"""model.blank_id reaches the decoders: a model whose blank is class 0 decodes as well."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.data.text import VOCABULARY
from sweep.errors import ConfigError
from sweep.evaluate.decode import DecoderSpec, labels


def _logprobs(ids: list[int], classes: int = len(VOCABULARY) + 1) -> np.ndarray:
    out = np.full((len(ids), classes), -20.0, np.float32)
    out[np.arange(len(ids)), ids] = 0.0
    return out


@pytest.mark.parametrize("name", ["greedy", "beam"])
def test_a_blank_first_model_decodes_with_its_blank_id(name: str) -> None:
    # Blank at 0 shifts every letter up by one: "да" is (д+1, blank, а+1).
    d, a = VOCABULARY.index("д") + 1, VOCABULARY.index("а") + 1
    text = DecoderSpec(name=name, blank_id=0).build().decode(_logprobs([d, d, 0, a, 0]))
    assert text == "да"
    # The same frames read with T-one's blank (34) are other letters entirely.
    assert DecoderSpec(name="greedy").build().decode(_logprobs([d, d, 0, a, 0])) != "да"


def test_labels_put_the_blank_where_the_model_has_it() -> None:
    assert labels(blank_id=len(VOCABULARY))[-1] == ""
    assert labels(blank_id=0)[0] == "" and labels(blank_id=0)[1] == VOCABULARY[0]
    with pytest.raises(ConfigError, match=r"model\.blank_id=99"):
        labels(blank_id=99)
