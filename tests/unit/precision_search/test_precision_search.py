"""The precision search's parts as data in, data out: group shrinking, patterns, the search
driven by a deterministic stand-in for "build and evaluate", and the flag set it writes
(loaded back through Hydra as `trt=<name>`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sweep.config import as_dict
from sweep.engine import Engine, EngineFormat
from sweep.flags import FlagSet
from sweep.precision_search import pinning
from sweep.precision_search.budget import Budget
from sweep.precision_search.outputs import flag_set_yaml
from sweep.precision_search.search import (
    PrecisionSearchError,
    Score,
    Search,
    frame_flips,
)


def test_shrink_finds_the_scattered_items_that_matter():
    items = list(range(64))
    needed = {5, 6, 40}
    probes: list[list[int]] = []

    def passes(kept: list[int]) -> bool:
        probes.append(kept)
        return needed <= set(kept)

    assert pinning.shrink(items, passes) == sorted(needed)
    # Group testing: far fewer probes than one per item.
    assert len(probes) <= 2 * len(needed) * 6


def test_shrink_keeps_everything_when_each_item_matters():
    assert pinning.shrink([1, 2, 3], lambda kept: len(kept) == 3) == [1, 2, 3]


def test_shrink_result_always_passed():
    """Non-monotone probes (noise): whatever shrink returns was itself probed and passed."""
    rng = np.random.RandomState(0)
    outcomes: dict[tuple[int, ...], bool] = {}

    def passes(kept: list[int]) -> bool:
        return outcomes.setdefault(tuple(kept), bool(rng.rand() < 0.5))

    items = list(range(20))
    kept = pinning.shrink(items, passes)
    assert kept == items or outcomes[tuple(kept)]


def c(i: int, name: str, op: str) -> pinning.Candidate:
    return pinning.Candidate(i, name, op)


UNIVERSE = [c(0, "/a/norm", "LayerNormalization"), c(1, "/a/mm", "MatMul"),
            c(2, "/b/norm", "LayerNormalization"), c(3, "/b/mm", "MatMul"),
            c(4, "/out", "LogSoftmax")]


def test_patterns_use_op_types_for_whole_types_and_names_otherwise():
    pinned = [UNIVERSE[0], UNIVERSE[2], UNIVERSE[3], UNIVERSE[4]]
    assert pinning.patterns(pinned, UNIVERSE) == ["LayerNormalization", "/b/mm", "LogSoftmax"]
    assert pinning.patterns([], UNIVERSE) == []


def test_candidates_are_the_named_float_nodes(tiny_onnx):
    found = pinning.candidates(onnx.load(tiny_onnx), "fp16")
    assert [x.name for x in found] == ["cast", "reshape", "matmul", "logsoftmax", "mean",
                                      "unsqueeze", "add"]
    assert [x.index for x in found] == sorted(x.index for x in found)


def test_frame_flips():
    a = [np.array([[0, 1.0], [1.0, 0]]), np.array([[1.0, 0]])]
    b = [np.array([[0, 1.0], [0, 1.0]]), np.array([[1.0, 0]])]
    assert frame_flips(a, a) == 0.0
    assert frame_flips(a, b) == pytest.approx(1 / 3)


# -- the search, with a stand-in for build + evaluate -------------------------------------

class FakeEvaluate:
    """WER goes up by 0.1 for every node in ``sensitive`` that is not pinned to fp32."""

    def __init__(self, sensitive: set[str], universe: list[pinning.Candidate],
                 fp32_wer: float = 0.1) -> None:
        self.sensitive = sensitive
        self.universe = universe
        self.fp32_wer = fp32_wer
        self.calls = 0

    def __call__(self, flags: FlagSet, reference: list[np.ndarray] | None):
        self.calls += 1
        pinned = {x.name for x in self.universe
                  if any(p in (x.name, x.op_type) for p, _ in flags.layer_precisions)}
        hurt = 0 if flags.precision == "fp32" else len(self.sensitive - pinned)
        engine = Engine(path=Path(f"/cache/{flags.digest}/model.onnx"),
                        format=EngineFormat.ONNX_EMULATED, flags=flags, builder="fake",
                        builder_version="1", build_seconds=0.0, log_path=Path("/dev/null"))
        score = Score(self.fp32_wer + 0.1 * hurt, 0.0, 0.01 * hurt, 0.0, 0.0, False)
        return score, [np.zeros((1, 2))], engine


def search(sensitive: set[str], budget: float = 0.0, **kw) -> tuple[Search, FakeEvaluate]:
    """``budget`` in percentage points over fp32."""
    fake = FakeEvaluate(sensitive, UNIVERSE)
    s = Search(fake, FlagSet(opt_level=5), "bf16", Budget(max_wer_delta_points=budget),  # type: ignore[arg-type]
               UNIVERSE,
               say=lambda _: None, **kw)
    return s, fake


@pytest.mark.parametrize("granularity", ["auto", "node", "op_type"])
def test_search_finds_the_sensitive_nodes(granularity):
    s, _ = search({"/b/norm", "/out"}, granularity=granularity)
    result = s.run()
    expected = {"auto": ["/b/norm", "LogSoftmax"], "node": ["/b/norm", "LogSoftmax"],
                "op_type": ["LayerNormalization", "LogSoftmax"]}[granularity]
    assert result.patterns == expected
    assert result.final.passed and result.final.phase == "final"
    assert result.final.flags.precision == "bf16"
    assert result.final.flags.precision_constraints == "obey"
    assert result.final.flags.opt_level == 5  # the rest of the flag set is kept
    assert result.baseline.wer == pytest.approx(0.1)
    assert [p.phase for p in result.probes[:3]] == ["baseline", "none pinned", "all pinned"]


def test_a_budget_that_the_target_meets_pins_nothing():
    s, fake = search({"/out"}, budget=10.0)  # 10 points: one sensitive node's 0.1
    result = s.run()
    assert result.patterns == [] and result.pinned_nodes == []
    assert result.final.flags.layer_precisions == ()
    assert fake.calls == 3  # baseline, nothing pinned, the final check


def test_an_unreachable_budget_is_reported():
    s, fake = search({"/out"})
    fake.fp32_wer = 0.1
    original = fake.__call__

    def worse(flags, reference):  # even all-fp32 pins lose accuracy
        score, logprobs, engine = original(flags, reference)
        if flags.precision != "fp32":
            score = Score(score.wer + 0.5, 0, 0, 0, 0, False)
        return score, logprobs, engine

    s.evaluate = worse  # type: ignore[assignment]
    with pytest.raises(PrecisionSearchError, match="raise --max-wer-delta"):
        s.run()


def test_max_probes_gives_a_passing_partial_answer():
    s, _ = search({"/a/norm", "/b/mm"}, granularity="node", max_probes=4)
    result = s.run()
    assert not result.complete and result.final.passed
    assert len(result.pinned_nodes) >= 2


def test_frame_criterion_tightens_the_wer_budget():
    criteria = Budget(max_wer_delta_points=100.0, max_frame_flips=0.0)
    assert criteria.passes(0.5, 0.0, 0.1)
    assert not criteria.passes(0.1, 0.001, 0.1)


def test_written_flag_set_loads_as_a_trt_preset(tmp_path):
    from hydra import compose, initialize_config_dir

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    flags = FlagSet.from_mapping({
        "precision": "bf16", "precision_constraints": "obey", "tf32": False,
        "layer_precisions": {"/blocks.0/attn/norm/LayerNormalization": "fp32",
                             "Softmax": "fp32"}})
    (tmp_path / "trt").mkdir()
    (tmp_path / "trt" / "found.yaml").write_text(flag_set_yaml(flags, ["a header", ""]))
    register()
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["trt=found", f"hydra.searchpath=[file://{tmp_path}]"])
    assert FlagSet.from_mapping(as_dict(cfg.trt)) == flags
