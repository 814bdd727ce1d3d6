"""The ranked int8/fp8 search: budgets in the sweep's units, the ranking on a small streaming
Q/DQ model with a planted sensitive node (real surgery, real ONNX Runtime streaming of real
audio), and the loop's decisions and resume with a deterministic stand-in for the probes."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sweep.data.manifest import load_manifest
from sweep.engine import Engine, EngineFormat
from sweep.errors import ConfigError
from sweep.evaluate.decode import GreedyDecoder
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.precision.realise import TypedModel
from sweep.precision_search import budget as budgets
from sweep.precision_search import qdq, ranking
from sweep.precision_search.budget import Budget
from sweep.precision_search.history import History
from sweep.precision_search.probes import StreamingProbes
from sweep.precision_search.ranked import FullEval, RankedSearch, StopSearch, SubsetEval
from tests.support.paths import ROOT

# -- budgets ----------------------------------------------------------------------------------


def _args(**kw: object) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    budgets.add_options(p)
    argv: list[str] = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def test_old_fraction_budget_is_refused_naming_the_new_option_and_unit():
    with pytest.raises(ConfigError, match=r"--max-wer-delta 0\.5\b.*points|points.*"
                                          r"--max-wer-delta 0\.5"):
        budgets.from_args(_args(wer_budget="0.005"))


def test_budgets_in_points_percent_and_share_of_fp32():
    fp32 = 0.175
    assert budgets.from_args(_args()).wer_bound(fp32) == pytest.approx(0.18)  # 0.5 pts
    assert budgets.from_args(_args(max_wer_delta="1")).wer_bound(fp32) == pytest.approx(0.185)
    assert budgets.from_args(_args(max_wer="20")).wer_bound(fp32) == pytest.approx(0.20)
    rel = budgets.from_args(_args(max_wer_rel="10%"))
    assert rel.wer_bound(fp32) == pytest.approx(0.1925)
    assert rel.passes(0.1925, 0.0, fp32) and not rel.passes(0.1930, 0.0, fp32)
    with pytest.raises(ConfigError, match="fraction"):
        budgets.from_args(_args(max_wer_rel="0.05"))
    with pytest.raises(ConfigError, match="fraction"):
        budgets.from_args(_args(max_wer_delta="0.005"))  # units.py's refusal
    flips = Budget(max_wer_delta_points=0.0, max_frame_flips=0.01)
    assert flips.passes(0.175, 0.01, fp32) and not flips.passes(0.175, 0.02, fp32)


# -- the ranking on a small streaming Q/DQ model ---------------------------------------------

CHUNK, FRAMES, WIDTH, LAYERS = 3200, 20, 160, 8


def _qdq(x: str, scale: float, name: str, nodes: list, inits: list) -> str:
    inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
              numpy_helper.from_array(np.array(0, np.int8), f"{name}_z")]
    nodes += [helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"], [f"{name}_q"],
                               name=f"{name}_Q"),
              helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                               [f"{name}_dq"], name=f"{name}_DQ")]
    return f"{name}_dq"


def streaming_model(path: Path, planted: int | None) -> Path:
    """Monolithic contract (INT32 samples + a state -> 20 frames x 35 logprobs + state):
    8 MatMul+Tanh layers; the state carries the last layer's mean into the next chunk, so
    an error compounds as in a streaming encoder. ``planted`` None: float; else every
    MatMul reads Q/DQ-quantised operands at calibrated int8 scales, except layer
    ``planted`` whose activation scale is 20 times too coarse."""
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array(np.array([0, FRAMES, WIDTH], np.int64), "shape"),
             numpy_helper.from_array(np.array(1 / 32768, np.float32), "gain"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array((rng.randn(WIDTH, 35) / 4).astype(np.float32), "Wout")]
    nodes = [helper.make_node("Cast", ["signal"], ["f"], to=TensorProto.FLOAT, name="/cast"),
             helper.make_node("Mul", ["f", "gain"], ["fs"], name="/scale"),
             helper.make_node("Reshape", ["fs", "shape"], ["r"], name="/reshape"),
             helper.make_node("Unsqueeze", ["state", "axis1"], ["s3"], name="/state/Unsqueeze"),
             helper.make_node("Add", ["r", "s3"], ["h0"], name="/state/Add")]
    h = "h0"
    for k in range(LAYERS):
        w = (rng.randn(WIDTH, WIDTH) / np.sqrt(WIDTH) * 0.9).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{k}"))
        x, wk = h, f"W{k}"
        if planted is not None:
            # Calibrated: layer 0 reads audio plus state (|x| < 2), the others tanh (< 1).
            scale = (2.0 if k == 0 else 1.0) / 127 * (20 if k == planted else 1)
            x = _qdq(h, scale, f"/layers.{k}/act", nodes, inits)
            wk = _qdq(f"W{k}", float(np.abs(w).max()) / 127, f"/layers.{k}/w", nodes, inits)
        nodes += [helper.make_node("MatMul", [x, wk], [f"m{k}"], name=f"/layers.{k}/fc/MatMul"),
                  helper.make_node("Tanh", [f"m{k}"], [f"h{k + 1}"], name=f"/layers.{k}/Tanh")]
        h = f"h{k + 1}"
    nodes += [helper.make_node("MatMul", [h, "Wout"], ["logits"], name="/head/MatMul"),
              helper.make_node("LogSoftmax", ["logits"], ["logprobs"], axis=-1,
                               name="/LogSoftmax"),
              helper.make_node("ReduceMean", [h], ["hm"], axes=[1], keepdims=0, name="/mean"),
              helper.make_node("Mul", ["state", "half"], ["sh"], name="/state/Mul"),
              helper.make_node("Add", ["sh", "hm"], ["state_next"], name="/state/Next")]
    graph = helper.make_graph(
        nodes, "streaming",
        [helper.make_tensor_value_info("signal", TensorProto.INT32, ["batch", CHUNK, 1]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["batch", FRAMES, 35]),
         helper.make_tensor_value_info("state_next", TensorProto.FLOAT, ["batch", WIDTH])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _engine(path: Path, flags: FlagSet) -> Engine:
    # The probes stream the file as it is: these models need no emulation.
    return Engine(path=path, format=EngineFormat.ONNX_EMULATED, flags=flags, builder="none",
                  builder_version="0", build_seconds=0.0, log_path=path)


def _realise(q_path: Path, flags: FlagSet) -> TypedModel:
    """The stand-in for ModelOpt here: the quantised model with the FP32 keeps reverted."""
    keeps = [p for p, _ in flags.layer_precisions]
    model, _ = qdq.revert(onnx.load(str(q_path)), keeps)
    path = q_path.with_name(f"q-{len(keeps)}-{abs(hash(tuple(keeps)))}.onnx")
    onnx.save(model, str(path))
    return TypedModel(path, hashlib.sha256(path.read_bytes()).hexdigest(), True)


@pytest.mark.parametrize("planted", [1, 4, 6])
def test_ranking_puts_the_planted_sensitive_node_first(tmp_path, planted):
    float_path = streaming_model(tmp_path / "float.onnx", None)
    q_path = streaming_model(tmp_path / "q.onnx", planted)
    model = ModelInterface(name="tiny", onnx_path=float_path, contract=Contract.MONOLITHIC,
                           audio_input="signal", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    utterances = load_manifest(ROOT / "demo" / "assets" / "data" / "demo_tiny")[:3]
    base = FlagSet(strongly_typed=True, precision="int8")
    probes = StreamingProbes(model, utterances, GreedyDecoder().decode, base,
                             lambda flags: _realise(q_path, flags), _engine,
                             tmp_path / "record.jsonl")
    groups = qdq.groups(onnx.load(str(q_path)), ("MatMul",), "node")
    assert [g.name for g in groups] == [f"/layers.{k}/fc/MatMul" for k in range(LAYERS)]
    search = RankedSearch(probes, groups, Budget(max_wer_percent=100, max_frame_flips=0.0),
                          History(tmp_path / "h.jsonl"), max_probes=3, say=lambda _: None)
    with pytest.raises(StopSearch):
        search.run()
    first = search.rounds[0]
    assert first.scores[0].group == f"/layers.{planted}/fc/MatMul"
    assert first.scores[0].gain > 0 and all(s.rewired == 2 for s in first.scores)
    # The first revert probed on the full set is the planted node's.
    assert search.steps[2].group == f"/layers.{planted}/fc/MatMul"
    assert search.steps[2].result.kl < search.steps[1].result.kl


def test_revert_rewires_only_the_named_node():
    m = onnx.load(str(streaming_model(Path("/tmp") / f"qdq-{id(object())}.onnx", 2)))
    variant, rewired = qdq.revert(m, ["/layers.2/fc/MatMul"])
    node = next(n for n in variant.graph.node if n.name == "/layers.2/fc/MatMul")
    assert rewired == 2 and list(node.input) == ["h2", "W2"]
    other = next(n for n in variant.graph.node if n.name == "/layers.3/fc/MatMul")
    assert list(other.input) == ["/layers.3/act_dq", "/layers.3/w_dq"]
    assert qdq.revert(m, ["/head/MatMul"])[1] == 0  # not quantised: nothing to revert


def test_module_groups_gather_a_blocks_nodes():
    model = onnx.load(str(streaming_model(Path("/tmp") / f"qdq-{id(object())}.onnx", 0)))
    assert qdq.module_of("/blocks.0/attn/q/MatMul") == "/blocks.0/attn"
    assert qdq.module_of("/head/MatMul") == "/head/MatMul"
    assert [g.nodes for g in qdq.groups(model, ("MatMul",), "module")][:2] == [
        ("/layers.0/fc/MatMul",), ("/layers.1/fc/MatMul",)]


def test_mismatch_subset_prefers_changed_transcripts_then_frame_flips():
    refs = ["a", "b", "c", "d", "e"]
    texts = ["a", "x", "c", "y", "e"]
    flips = [5, 1, 0, 3, 9]
    assert ranking.mismatch_subset(refs, texts, flips, 2) == [1, 3]
    assert ranking.mismatch_subset(refs, texts, flips, 4) == [0, 1, 3, 4]


def test_frame_kl_is_zero_for_equal_outputs_and_grows_with_the_change():
    rng = np.random.RandomState(1)
    a = [np.log(rng.dirichlet(np.ones(35), size=10))]
    assert ranking.frame_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    small = [a[0] + rng.randn(*a[0].shape) * 0.01]
    large = [a[0] + rng.randn(*a[0].shape) * 0.5]
    assert 0 < ranking.frame_kl(a, small) < ranking.frame_kl(a, large)


# -- the loop, with deterministic probes ------------------------------------------------------

class FakeProbes:
    """fp32 WER 0.10. Each quantised node adds its cost to WER (in steps of 0.01) and to
    frame flips; reverting removes it. ``fail_after`` raises KeyboardInterrupt on that
    evaluation (an interrupted session)."""

    def __init__(self, costs: dict[str, int], fail_after: int | None = None) -> None:
        self.costs = costs
        self.calls = 0
        self.fail_after = fail_after

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt

    def _hurt(self, in_float: Sequence[str]) -> int:
        return sum(c for n, c in self.costs.items() if n not in in_float)

    def baseline(self) -> FullEval:
        self._tick()
        return FullEval(0.10, 0.05, 0.0, 0.0, ["a", "b"], [0, 0], 1.0)

    def full(self, keeps: tuple[str, ...]) -> FullEval:
        self._tick()
        hurt = self._hurt(keeps)
        return FullEval(0.10 + 0.01 * hurt, 0.05, 0.001 * hurt, 0.01 * hurt,
                        ["a", "b" if hurt == 0 else "x"], [0, hurt], 1.0)

    def subset(self, keeps, revert, subset) -> SubsetEval:
        self._tick()
        return SubsetEval(0.01 * self._hurt((*keeps, *revert)), self._hurt((*keeps, *revert)),
                          1, 0.1)


NODES = [qdq.Group(n, (n,), ("MatMul",)) for n in ("a", "b", "c", "d", "e")]


def _search(probes: FakeProbes, history: History, budget_points: float = 1.0,
            **kw) -> RankedSearch:
    return RankedSearch(probes, NODES, Budget(max_wer_delta_points=budget_points), history,
                        say=lambda _: None, **kw)


def test_reverts_the_costliest_first_and_stops_at_the_budget(tmp_path):
    probes = FakeProbes({"b": 3, "d": 1, "e": 1})
    result = _search(probes, History(tmp_path / "h.jsonl")).run()
    # 5 errors over fp32; budget 1 point (one error): revert b (3), then d or e (1).
    assert result.keeps[0] == "b" and len(result.keeps) == 2
    assert result.final.passed and result.final.result.wer == pytest.approx(0.11)
    assert [s.phase for s in result.steps] == ["baseline", "plain", "revert", "revert"]


def test_plain_target_within_budget_keeps_nothing(tmp_path):
    result = _search(FakeProbes({"b": 1}), History(tmp_path / "h.jsonl")).run()
    assert result.keeps == () and result.probes == 2


def test_out_of_probes_is_refused_with_the_best_so_far(tmp_path):
    search = _search(FakeProbes({"a": 2, "b": 2, "c": 2}), History(tmp_path / "h.jsonl"),
                     budget_points=0.0, max_probes=3)
    with pytest.raises(StopSearch, match=r"--max-probes 3.*No preset was written"):
        search.run()


def test_a_revert_that_does_not_help_is_undone_and_the_model_re_ranked(tmp_path):
    class Misleading(FakeProbes):
        # The subset says "c" matters most; on the full set it changes nothing.
        def subset(self, keeps, revert, subset):
            s = super().subset(keeps, revert, subset)
            return SubsetEval(s.kl - (0.5 if "c" in revert else 0), s.flips, 1, 0.1)

    probes = Misleading({"b": 2, "d": 1})
    search = _search(probes, History(tmp_path / "h.jsonl"), budget_points=0.0)
    result = search.run()
    reverts = [(s.group, s.accepted) for s in result.steps if s.phase == "revert"]
    assert reverts[0] == ("c", False)
    assert "c" not in result.keeps and set(result.keeps) == {"b", "d"}


def test_an_interrupted_search_resumes_to_the_same_result(tmp_path):
    costs = {"a": 1, "b": 3, "d": 2}
    whole = _search(FakeProbes(costs), History(tmp_path / "whole.jsonl"),
                    budget_points=0.0).run()

    path = tmp_path / "cut.jsonl"
    first = FakeProbes(costs, fail_after=9)
    with pytest.raises(KeyboardInterrupt):
        _search(first, History(path), budget_points=0.0).run()
    second = FakeProbes(costs)
    resumed = _search(second, History(path), budget_points=0.0).run()
    assert resumed.keeps == whole.keeps
    assert [s.keeps for s in resumed.steps] == [s.keeps for s in whole.steps]
    assert any(s.replayed for s in resumed.steps)
    # Only what the first session had not finished was evaluated again.
    assert second.calls == len(History(path).evals) - 9 > 0
    again = FakeProbes(costs)
    replayed = _search(again, History(path), budget_points=0.0).run()
    assert again.calls == 0 and replayed.keeps == whole.keeps


def test_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "h.jsonl"
    h = History(path)
    h.put("baseline", {"seconds": 2.0})
    with open(path, "a") as f:
        f.write('{"type": "eval", "key": "full:x", "val')
    again = History(path)
    assert again.torn == 1 and list(again.evals) == ["baseline"] and again.seconds() == 2.0


def test_a_history_of_another_search_is_refused(tmp_path):
    h = History(tmp_path / "h.jsonl")
    h.set_meta(identity={"model": "abc", "dataset": "demo_tiny"})
    with pytest.raises(ConfigError, match="differs in model"):
        History(tmp_path / "h.jsonl").check_identity({"model": "def", "dataset": "demo_tiny"})


# -- the command line's own checks (before any work) ------------------------------------------

def _check(*argv: str) -> Budget:
    from sweep.precision_search.cli import _check_args, _parser

    return _check_args(_parser().parse_args(list(argv)))


def test_options_that_do_not_fit_the_target_are_refused():
    with pytest.raises(ConfigError, match="--granularity op_type with --target int8"):
        _check("--target", "int8", "--granularity", "op_type")
    with pytest.raises(ConfigError, match="--granularity module with --target bf16"):
        _check("--target", "bf16", "--granularity", "module")
    with pytest.raises(ConfigError, match="not resumable"):
        _check("--target", "fp16", "--history", "/tmp/h.jsonl")
    with pytest.raises(ConfigError, match="always typed"):
        _check("--target", "int8", "--typed")
    with pytest.raises(ConfigError, match="--max-minutes"):
        _check("--target", "int8", "--max-minutes", "0")
    assert _check("--target", "fp8", "--max-wer", "20").max_wer_percent == 20.0
