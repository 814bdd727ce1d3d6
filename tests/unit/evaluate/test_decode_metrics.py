import numpy as np
import pytest

from sweep.data.text import BLANK_ID, VOCABULARY, encode, normalize
from sweep.errors import EvaluationError
from sweep.evaluate.decode import GreedyDecoder, collapse
from sweep.evaluate.metrics import latency_summary, score


def _logprobs(ids):
    out = np.full((len(ids), len(VOCABULARY) + 1), -20.0, np.float32)
    out[np.arange(len(ids)), ids] = 0.0
    return out


def test_collapse_merges_repeats_and_drops_blanks():
    b = BLANK_ID
    assert collapse(np.array([b, 3, 3, b, 3, 5, 5, b])) == [3, 3, 5]
    assert collapse(np.array([], dtype=int)) == []


def test_greedy_decodes_words():
    text = "да нет"
    ids = []
    for i in encode(text):
        ids += [i, i, BLANK_ID]
    assert GreedyDecoder().decode(_logprobs(ids)) == text


def test_normalize():
    assert normalize("  Ёлка, ПРИВЕТ!  Как-то 12 ") == "елка привет как то"
    assert normalize("Ёж", yo_to_ye=False) == "ёж"


def test_score_is_corpus_level_and_normalised():
    s = score(["ёлка стоит", "один два три"], ["Елка стоит.", "один два"])
    assert s.wer == pytest.approx(1 / 5)
    assert 0 < s.cer < s.wer


def test_score_rejects_all_empty_references():
    with pytest.raises(EvaluationError, match="utterance 1"):
        score([""], ["что-то"])


def test_latency_summary():
    values = np.arange(1, 101, dtype=float)
    s = latency_summary(values)
    assert s["latency_p50_ms"] == pytest.approx(50.5)
    assert s["latency_p99_ms"] == pytest.approx(99.01)
    assert latency_summary([]) == {}
