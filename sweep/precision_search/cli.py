"""``python -m sweep.precision_search``: the layers that must stay FP32 for an fp16/bf16
engine to keep its accuracy, written as a ready flag set.

    python -m sweep.precision_search --target bf16 --wer-budget 0.005 dataset=demo_test
    python -m sweep trt=bf16_search      # sweep with the flag set it wrote (conf/trt/)

Arguments after the options are the sweep's own Hydra overrides (model, dataset, decoder,
tracking, builder.cache_dir, trt.opt_level, trt.tf32, ...).

The search (sweep/pinning.py): a baseline probe (the same flag set in fp32, nothing
pinned) sets the reference; if the target precision with nothing pinned already meets the
budget, the answer is "pin nothing". Otherwise, starting from every candidate node pinned
(which reproduces the baseline), groups of nodes in topological order are unpinned while
the probe still passes, a failing group being split in two. ``--granularity auto`` does
this first over op types (a handful of probes), then over the nodes of the op types that
had to stay. The kept nodes are written as the fewest patterns (op types where a whole
type is kept), and a last probe checks exactly the flag set written.

A probe passes when its WER is at most the baseline's plus ``--wer-budget`` and, with
``--max-frame-flips``, when at most that fraction of frames changes its most likely class
against the baseline. WER moves in steps of one word per test set, so on a small test set
or a robust model it cannot tell layers apart; the frame criterion (the per-frame analogue
of Polygraphy's output comparison) still can.

Probes run in-process: each builds the emulated engine (through the engine cache, so a
flag set is built once) and streams the test set through it with ONNX Runtime
(``sweep.evaluate.reference.OrtPipeline``): the same chunking, state round-trip and decoder
as a sweep job, without starting Triton per probe (seconds each, and latency is not what a
probe measures). The served emulated engine computes the same numbers (see
tests/integration/test_triton_parity.py). Probes always build with the emulator, which
rounds tensor storage, not kernel internals (build/emulate.py): on a GPU host, sweep the
written flag set with builder=trtexec to confirm it, and pin more if a real engine needs it.

MLflow: a parent run (tag ``trt-sweep.kind=precision_search``) with one child run per
probe (``probe``): its pins, WER, CER, frame flips, pass/fail; the parent gets the result,
``probes.csv`` and the written YAML.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sweep import cli
from sweep.builder.base import Engine
from sweep.errors import ConfigError, SweepError
from sweep.flags import FlagSet
from sweep.precision_search import pinning
from sweep.tracking.runs import JobRun, environment_tags, job_run
from sweep.tracking.store import Store, open_store

TARGETS = ("fp16", "bf16")
GRANULARITIES = ("auto", "op_type", "node")
KIND_TAG = "trt-sweep.kind"


class PrecisionSearchError(SweepError):
    """The search cannot answer: the budget is out of reach or the setup is unusable."""


@dataclass(frozen=True)
class Criteria:
    """When a probe is good enough, relative to the fp32 baseline."""

    wer_budget: float
    max_frame_flips: float | None = None

    def passes(self, score: Score, baseline: Score) -> bool:
        # A hair of tolerance: WERs are ratios of small integers computed as floats.
        ok = score.wer <= baseline.wer + self.wer_budget + 1e-9
        if self.max_frame_flips is not None:
            ok = ok and score.frame_flips <= self.max_frame_flips + 1e-12
        return ok

    def describe(self) -> str:
        text = f"WER <= baseline + {self.wer_budget:g}"
        if self.max_frame_flips is not None:
            text += f", frame flips <= {self.max_frame_flips:g}"
        return text


@dataclass(frozen=True)
class Score:
    wer: float
    cer: float
    frame_flips: float  # fraction of frames whose argmax class differs from the baseline's
    build_seconds: float
    eval_seconds: float
    cached: bool


@dataclass
class Probe:
    n: int
    phase: str
    pinned: int  # nodes kept in fp32
    flags: FlagSet
    score: Score
    passed: bool
    run_id: str | None = None


@dataclass
class SearchResult:
    baseline: Score
    patterns: list[str]
    pinned_nodes: list[str]
    final: Probe
    probes: list[Probe] = field(default_factory=list)
    complete: bool = True  # False when --max-probes cut the search short


# -- evaluating one flag set ---------------------------------------------------------------

Transcribe = Callable[[Path, Engine], tuple[list[str], list[np.ndarray]]]
"""(engine path, engine) -> (hypotheses, per-utterance log-probabilities)."""


class Evaluator:
    """Builds a flag set with the emulator (engine cache) and scores it in-process."""

    def __init__(self, references: Sequence[str], transcribe: Transcribe,
                 build: Callable[[FlagSet], Engine]) -> None:
        self.references = list(references)
        self.transcribe = transcribe
        self.build = build

    def __call__(self, flags: FlagSet, reference_logprobs: list[np.ndarray] | None
                 ) -> tuple[Score, list[np.ndarray], Engine]:
        from sweep.evaluate.metrics import score

        engine = self.build(flags)
        t0 = time.perf_counter()
        hypotheses, logprobs = self.transcribe(engine.path, engine)
        seconds = time.perf_counter() - t0
        scores = score(self.references, hypotheses)
        flips = 0.0 if reference_logprobs is None else frame_flips(reference_logprobs, logprobs)
        return (Score(scores.wer, scores.cer, flips, engine.build_seconds, seconds,
                      engine.cached), logprobs, engine)


def frame_flips(reference: Sequence[np.ndarray], probe: Sequence[np.ndarray]) -> float:
    """Fraction of frames whose most likely class differs between two runs."""
    changed = total = 0
    for a, b in zip(reference, probe, strict=True):
        frames = min(len(a), len(b))
        changed += int(np.count_nonzero(a[:frames].argmax(-1) != b[:frames].argmax(-1)))
        changed += abs(len(a) - len(b))  # a frame one run has and the other lacks differs
        total += max(len(a), len(b))
    return changed / total if total else 0.0


# -- the search ----------------------------------------------------------------------------

class Search:
    """Drives :func:`pinning.shrink` with probes; remembers every probe it made."""

    def __init__(self, evaluate: Evaluator, base: FlagSet, target: str, criteria: Criteria,
                 candidates: Sequence[pinning.Candidate], granularity: str = "auto",
                 max_probes: int = 200,
                 on_probe: Callable[[Probe, Engine], str | None] | None = None,
                 say: Callable[[str], None] = print) -> None:
        if target not in TARGETS:
            raise ConfigError(f"--target {target!r}: expected one of {', '.join(TARGETS)}.")
        if granularity not in GRANULARITIES:
            raise ConfigError(f"--granularity {granularity!r}: expected one of "
                              f"{', '.join(GRANULARITIES)}.")
        if base.strongly_typed:
            raise ConfigError("the precision search needs a weakly typed flag set "
                              "(trt.strongly_typed=false): a strongly typed network takes no "
                              "per-layer precisions.")
        self.evaluate = evaluate
        self.target = target
        self.criteria = criteria
        self.candidates = list(candidates)
        self.granularity = granularity
        self.max_probes = max_probes
        self.on_probe = on_probe
        self.say = say
        # The search owns the pins: a configured override list would hide what it finds.
        self.base = replace(base, precision=target, layer_precisions=(),
                            layer_output_types=())
        self.probes: list[Probe] = []
        self.complete = True
        self._memo: dict[frozenset[str], bool] = {}
        self._baseline: tuple[Score, list[np.ndarray]] | None = None
        self._phase = "start"

    def flags_for(self, pinned: Sequence[pinning.Candidate]) -> FlagSet:
        names = pinning.patterns(pinned, self.candidates)
        if not names:
            return self.base
        flags = replace(self.base, precision_constraints="obey",
                        layer_precisions=tuple((p, "fp32") for p in names))
        flags.validate()
        return flags

    def _record(self, flags: FlagSet, pinned: int, score: Score, passed: bool,
                engine: Engine) -> Probe:
        probe = Probe(len(self.probes) + 1, self._phase, pinned, flags, score, passed)
        self.probes.append(probe)
        if self.on_probe is not None:
            probe.run_id = self.on_probe(probe, engine)
        self.say(f"probe {probe.n:>3} [{probe.phase}] {pinned:>4} pinned: WER {score.wer:.4f} "
                 f"CER {score.cer:.4f} flips {score.frame_flips:.5f} -> "
                 f"{'pass' if passed else 'FAIL'}"
                 f"{' (cached engine)' if score.cached else ''}")
        return probe

    def baseline(self) -> Score:
        if self._baseline is None:
            self._phase = "baseline"
            flags = replace(self.base, precision="fp32", precision_constraints="none")
            score, logprobs, engine = self.evaluate(flags, None)
            self._baseline = (score, logprobs)
            self._record(flags, 0, score, True, engine)
        return self._baseline[0]

    def passes(self, pinned: Sequence[pinning.Candidate]) -> bool:
        key = frozenset(c.name for c in pinned)
        if key in self._memo:
            return self._memo[key]
        if len(self.probes) >= self.max_probes:
            # Out of probes: keep what is pinned (it passed), report the result as partial.
            self.complete = False
            return False
        baseline = self.baseline()
        assert self._baseline is not None
        flags = self.flags_for(pinned)
        score, _, engine = self.evaluate(flags, self._baseline[1])
        passed = self.criteria.passes(score, baseline)
        self._memo[key] = passed
        self._record(flags, len(pinned), score, passed, engine)
        return passed

    def run(self) -> SearchResult:
        baseline = self.baseline()
        self._phase = "none pinned"
        if self.passes([]):
            return self._result(baseline, [])
        self._phase = "all pinned"
        if not self.passes(self.candidates):
            raise PrecisionSearchError(
                f"even with all {len(self.candidates)} candidate nodes in FP32 the probe fails "
                f"({self.criteria.describe()}; baseline WER {baseline.wer:.4f}). The "
                "criterion is tighter than the evaluation's own noise: raise --wer-budget or "
                "--max-frame-flips.")
        kept = list(self.candidates)
        if self.granularity in ("auto", "op_type"):
            self._phase = "op types"
            types = list(dict.fromkeys(c.op_type for c in self.candidates))
            kept_types = set(pinning.shrink(
                types, lambda ts: self.passes([c for c in self.candidates if c.op_type in ts])))
            kept = [c for c in self.candidates if c.op_type in kept_types]
        if self.granularity in ("auto", "node"):
            self._phase = "nodes"
            kept = pinning.shrink(kept, self.passes)
        return self._result(baseline, kept)

    def _result(self, baseline: Score, kept: list[pinning.Candidate]) -> SearchResult:
        # The last probe checks exactly the flag set that will be written: its patterns
        # (op types) may pin more nodes than the node list did (shape/weight nodes, which
        # change nothing), so it must pass too.
        self._phase = "final"
        flags = self.flags_for(kept)
        assert self._baseline is not None
        score, _, engine = self.evaluate(flags, self._baseline[1])
        passed = self.criteria.passes(score, baseline)
        final = self._record(flags, len(kept), score, passed, engine)
        if not passed:
            raise PrecisionSearchError(
                f"the final flag set {flags.label} ({flags.digest}) failed its check "
                f"(WER {score.wer:.4f}, flips {score.frame_flips:.5f}): the evaluation is "
                "not deterministic here. Use builder.intra_op_threads=1 and rerun.")
        return SearchResult(baseline, [p for p, _ in flags.layer_precisions],
                            [c.name for c in kept], final, self.probes, self.complete)


# -- output --------------------------------------------------------------------------------

def flag_set_yaml(flags: FlagSet, header: Sequence[str]) -> str:
    """A preset of the ``trt`` config group (``python -m sweep trt=NAME``)."""
    import yaml

    body: dict[str, Any] = flags.as_dict()
    for key in ("extra", "layer_output_types"):
        if not body[key]:
            del body[key]
    lines = [f"# {h}" if h else "#" for h in header]
    lines += ["defaults:", "  - default", "  - _self_", ""]
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def write_probes_csv(probes: Sequence[Probe], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["probe", "phase", "pinned_nodes", "patterns", "wer", "cer",
                         "frame_flips", "passed", "build_seconds", "eval_seconds",
                         "cached", "flags_digest", "run_id"])
        for p in probes:
            writer.writerow([p.n, p.phase, p.pinned, len(p.flags.layer_precisions),
                             f"{p.score.wer:.6f}", f"{p.score.cer:.6f}",
                             f"{p.score.frame_flips:.6f}", int(p.passed),
                             f"{p.score.build_seconds:.3f}", f"{p.score.eval_seconds:.3f}",
                             int(p.score.cached), p.flags.digest, p.run_id or ""])


# -- MLflow ----------------------------------------------------------------------------------

class SearchRuns:
    """The parent run of a search and a child run per probe."""

    def __init__(self, store: Store, name: str, params: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        self.store = store
        self.client = MlflowClient(store.uri)
        run = self.client.create_run(store.experiment_id, run_name=name,
                                     tags={KIND_TAG: "precision_search",
                                           **environment_tags()})
        self.run_id = run.info.run_id
        JobRun(self.run_id, self.client).params(params)

    def probe(self, probe: Probe, engine: Engine) -> str:
        tags = {KIND_TAG: "probe", "flags_digest": probe.flags.digest,
                "engine_hash": engine.path.parent.name,
                "engine_cached": str(engine.cached).lower(), "probe.phase": probe.phase}
        with job_run(self.store, f"probe {probe.n}: {probe.pinned} pinned",
                           self.run_id, tags) as job:
            job.params({"probe.n": probe.n, "probe.phase": probe.phase,
                        **probe.flags.params()})
            s = probe.score
            job.metrics({"wer": s.wer, "cer": s.cer, "frame_flips": s.frame_flips,
                         "passed": float(probe.passed), "pinned_nodes": float(probe.pinned),
                         "patterns": float(len(probe.flags.layer_precisions)),
                         "build_seconds": s.build_seconds, "eval_seconds": s.eval_seconds})
        return job.run_id

    def finish(self, status: str, metrics: dict[str, float] | None = None,
               files: Sequence[Path] = ()) -> None:
        try:
            if metrics:
                JobRun(self.run_id, self.client).metrics(metrics)
            for path in files:
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path))
        finally:
            self.client.set_terminated(self.run_id, status)


# -- the command -----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.precision_search",
        description="Find the layers that must stay FP32 for an fp16/bf16 engine to meet a "
                    "WER budget; write them as a conf/trt flag set.")
    p.add_argument("--target", choices=TARGETS, required=True,
                   help="the reduced precision to search for")
    p.add_argument("--wer-budget", type=float, required=True,
                   help="allowed absolute WER increase over the fp32 baseline, e.g. 0.005")
    p.add_argument("--max-frame-flips", type=float, default=None,
                   help="also require at most this fraction of frames to change their most "
                        "likely class against the baseline (finer than WER), e.g. 0.001")
    p.add_argument("--granularity", choices=GRANULARITIES, default="auto",
                   help="auto: op types first, then nodes of the op types that stay")
    p.add_argument("--max-probes", type=int, default=200,
                   help="stop after this many probes with the best set found so far")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads per probe (1 keeps probes deterministic)")
    p.add_argument("--output", type=Path, default=None,
                   help="where to write the flag set (default conf/trt/<target>_search.yaml "
                        "in the project, usable as trt=<target>_search)")
    p.add_argument("overrides", nargs="*",
                   help="the sweep's Hydra overrides, e.g. dataset=demo_test trt.tf32=false")
    return p


def _compose(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    from sweep.config import register
    from sweep.infra.files import PROJECT_ROOT

    register()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3",
                               job_name="precision_search"):
        return compose(config_name="config", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.wer_budget < 0 or (args.max_frame_flips is not None and args.max_frame_flips < 0):
        raise ConfigError("--wer-budget and --max-frame-flips must be >= 0.")
    from sweep import job
    from sweep.builder.cache import EngineCache
    from sweep.builder.emulate import EmulateBuilder
    from sweep.config import as_dict
    from sweep.evaluate.decode import DecoderSpec
    from sweep.evaluate.reference import OrtPipeline
    from sweep.infra.files import PROJECT_ROOT
    from sweep.model import read_onnx

    cfg = _compose(args.overrides)
    if cfg.builder.name != "emulate":
        raise ConfigError(f"builder={cfg.builder.name}: precision-search probes build with the "
                          "emulator (builder=emulate); sweep the flag set it writes with "
                          "builder=trtexec on a GPU host.")
    model = job.model_interface(cfg)
    model.tensors()
    utterances = job.dataset(cfg)
    base = FlagSet.from_mapping(as_dict(cfg.trt))
    decoder = DecoderSpec.from_config(as_dict(cfg.decoder), resolve=job.project_path).build()
    cache = EngineCache(cfg.builder.cache_dir)
    builder = EmulateBuilder(intra_op_num_threads=args.threads)

    def transcribe(path: Path, engine: Engine) -> tuple[list[str], list[np.ndarray]]:
        level = engine.runtime.get("graph_optimization_level", "ORT_ENABLE_ALL")
        run = OrtPipeline(model, path, graph_optimization_level=level, threads=args.threads,
                          fp16_features=cfg.eval.fp16_features).run(utterances)
        return ([decoder.decode(r.logprobs) for r in run.results],
                [np.asarray(r.logprobs) for r in run.results])

    evaluate = Evaluator([u.text for u in utterances], transcribe,
                         lambda flags: cache.build(builder, model.onnx_path, flags, "cpu"))
    candidates = pinning.candidates(read_onnx(model.onnx_path), args.target)
    criteria = Criteria(args.wer_budget, args.max_frame_flips)
    name = f"{args.target}_search"
    output = args.output or PROJECT_ROOT / "conf" / "trt" / f"{name}.yaml"
    store = open_store(cfg.tracking.uri, cfg.tracking.experiment,
                             cfg.tracking.artifact_root, Path.cwd())
    runs = SearchRuns(store, f"precision search {args.target} ({criteria.describe()})", {
        "search.target": args.target, "search.wer_budget": args.wer_budget,
        "search.max_frame_flips": args.max_frame_flips, "search.granularity": args.granularity,
        "search.max_probes": args.max_probes, "search.candidates": len(candidates),
        "model.onnx_path": model.onnx_path, "dataset.name": cfg.dataset.name,
        "dataset.utterances": len(utterances), "decoder.name": cfg.decoder.name,
        **base.params()})
    print(f"precision search: {args.target}, {criteria.describe()}, {len(candidates)} candidate "
          f"nodes, {len(utterances)} utterances; MLflow parent run {runs.run_id}",
          file=sys.stderr)
    search = Search(evaluate, base, args.target, criteria, candidates, args.granularity,
                    args.max_probes, on_probe=runs.probe,
                    say=lambda line: print(line, file=sys.stderr, flush=True))
    status = "FAILED"
    try:
        started = time.perf_counter()
        result = search.run()
        seconds = time.perf_counter() - started
        header = [
            f"Written by python -m sweep.precision_search (MLflow run {runs.run_id}):",
            f"{args.target} with {len(result.pinned_nodes)} of {len(candidates)} candidate "
            f"nodes kept in FP32, {len(search.probes)} probes"
            f"{'' if result.complete else ' (stopped at --max-probes: not minimal)'}.",
            f"Criterion: {criteria.describe()}, on {cfg.dataset.name} "
            f"({len(utterances)} utterances), decoder {cfg.decoder.name}.",
            f"Baseline (fp32) WER {result.baseline.wer:.4f}; this flag set: WER "
            f"{result.final.score.wer:.4f}, frame flips {result.final.score.frame_flips:.5f}.",
            f"Model {model.onnx_path.name}. Use: python -m sweep trt={output.stem}",
        ]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(flag_set_yaml(result.final.flags, header), encoding="utf-8")
        with tempfile.TemporaryDirectory() as tmp:
            probes_csv = Path(tmp) / "probes.csv"
            write_probes_csv(search.probes, probes_csv)
            status = "FINISHED"
            runs.finish(status, {
                "baseline_wer": result.baseline.wer, "final_wer": result.final.score.wer,
                "final_frame_flips": result.final.score.frame_flips,
                "probes": float(len(search.probes)),
                "pinned_nodes": float(len(result.pinned_nodes)),
                "patterns": float(len(result.patterns)), "complete": float(result.complete),
                "search_seconds": seconds}, [output, probes_csv])
        print(f"\n{len(result.patterns)} pattern(s) kept in FP32 "
              f"({len(result.pinned_nodes)} nodes), {len(search.probes)} probes, "
              f"{seconds:.0f} s:", file=sys.stderr)
        for pattern in result.patterns:
            print(f"  {pattern}", file=sys.stderr)
        print(f"WER {result.final.score.wer:.4f} (baseline {result.baseline.wer:.4f}); "
              f"written to {output}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            runs.finish(status)


def entry() -> None:
    cli.exit_with(lambda: cli.guard(
        main, "precision_search", interrupted="interrupted; the MLflow run was marked KILLED."))
