"""``python -m sweep.precision_search``: which layers must stay in float for a reduced
precision to keep its accuracy, written as a ready flag set (a ``conf/trt`` preset).

    python -m sweep.precision_search --target int8 --max-wer-delta 0.5 dataset=demo_test
    python -m sweep trt=int8_search       # sweep with the flag set it wrote (conf/trt/)
    python -m sweep.precision_search --target bf16 --max-wer-delta 0.5 --max-frame-flips 0.0005

Arguments after the options are the sweep's own Hydra overrides (model, dataset, decoder,
tracking, builder.cache_dir, trt.opt_level, trt.tf32, ...), with ``--config-dir`` and
``--config-name`` as for ``python -m sweep`` (sweep/loader.py reads them for every tool).

Two searches (docs/precision-search.md compares them):

* int8 / fp8 (``ranked.py``): quantise every Conv/Gemm/MatMul (ModelOpt Q/DQ, the recipe a
  sweep job realises), rank the quantised nodes or modules by how far each moves the
  outputs from fp32 on the utterances whose transcripts changed, and revert the worst to
  float one confirmed full-set probe at a time until the budget is met. Every evaluation
  is appended to a JSON-lines history: the same command resumes an interrupted search.
  The preset is strongly typed, the nodes kept in float as FP32 keeps.
* fp16 / bf16 (``search.py``, ``pinning.py``): group-testing bisection over op types, then
  nodes, from everything pinned FP32 down to a small set that still passes.

Budgets (sweep/units.py, the same options as ``python -m sweep.promote``):
``--max-wer-delta POINTS`` over fp32 (default 0.5), ``--max-wer PERCENT`` absolute, or
``--max-wer-rel PERCENT`` of fp32's own WER; ``--max-frame-flips FRACTION`` adds a per-frame
check; ``--max-probes`` and ``--max-minutes`` bound the search itself.

Probes run in-process: each builds the emulated engine (through the engine cache, so a
flag set is built once) and streams the test set through it with ONNX Runtime
(``sweep.evaluate.reference.OrtPipeline``): the same chunking, state round-trip and decoder
as a sweep job, without starting Triton per probe (seconds each, and latency is not what a
probe measures). The served emulated engine computes the same numbers (see
tests/integration/test_triton_parity.py). Probes always build with the emulator, which
rounds tensor storage, not kernel internals (builder/emulate.py): on a GPU host, sweep the
written flag set with builder=trtexec to confirm it.

MLflow: a parent run (tag ``trt-sweep.kind=precision_search``) with one child run per
probe (``probe``) and, for the ranked search, one per ranking round (``ranking``); the
parent gets the result, ``probes.csv``, the plot of WER against the nodes kept in float and
the written YAML.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sweep import cli, loader, units
from sweep.engine import Engine
from sweep.errors import ConfigError
from sweep.flags import FlagSet
from sweep.precision_search import budget as budgets
from sweep.precision_search import pinning, qdq
from sweep.precision_search.budget import Budget
from sweep.precision_search.outputs import (
    SearchRuns,
    flag_set_yaml,
    plot_wer_against_kept,
    write_probes_csv,
    write_steps_csv,
)
from sweep.precision_search.search import GRANULARITIES, Evaluator, Search
from sweep.tracking.store import open_store

BISECTED = ("fp16", "bf16")
RANKED = ("int8", "fp8")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.precision_search",
        description="Find the layers that must stay in float for a reduced precision to meet "
                    "a WER budget; write them as a conf/trt flag set.")
    p.add_argument("--target", choices=BISECTED + RANKED, required=True,
                   help="the reduced precision to search for: int8/fp8 by ranked fallback "
                        "over the quantised nodes, fp16/bf16 by bisection")
    budgets.add_options(p)
    p.add_argument("--granularity", choices=sorted({*GRANULARITIES, *qdq.GRANULARITIES}),
                   default=None,
                   help="int8/fp8: node (default) or module (a block's attention, "
                        "feed-forward or convolution module reverted together); fp16/bf16: "
                        "auto (default: op types, then nodes), op_type or node")
    p.add_argument("--max-probes", type=int, default=None,
                   help="stop after this many full-set probes (default: 50 for int8/fp8, "
                        "200 for fp16/bf16)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this much evaluation time (int8/fp8: over every session "
                        "of a resumed search)")
    p.add_argument("--ranking-subset", type=int, default=32, metavar="N",
                   help="int8/fp8: rank on at most N mismatched utterances (default 32)")
    p.add_argument("--history", type=Path, default=None,
                   help="int8/fp8: the JSON-lines record to write and resume (default: under "
                        "builder.cache_dir, named by the search's identity)")
    p.add_argument("--fresh", action="store_true",
                   help="int8/fp8: set the existing record aside and start over")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads per probe (1 keeps probes deterministic)")
    p.add_argument("--typed", action="store_true",
                   help="fp16/bf16: search the exclusions of a flag set realised in the graph "
                        "(AutoCast, strongly typed: what TensorRT 11 builds) instead of weak "
                        "pins (int8/fp8 are always typed)")
    p.add_argument("--output", type=Path, default=None,
                   help="where to write the flag set (default conf/trt/<target>_search.yaml "
                        "in the project, usable as trt=<target>_search)")
    # --config-dir, -cn and the sweep's overrides (dataset=demo_test trt.tf32=false ...)
    loader.add_config_options(p)
    return p


def _check_args(args: argparse.Namespace) -> Budget:
    budget = budgets.from_args(args)
    ranked = args.target in RANKED
    if args.granularity is not None:
        allowed = qdq.GRANULARITIES if ranked else GRANULARITIES
        if args.granularity not in allowed:
            raise ConfigError(f"--granularity {args.granularity} with --target {args.target}: "
                              f"expected one of {', '.join(allowed)}.")
    if args.max_probes is not None and args.max_probes < 2:
        raise ConfigError(f"--max-probes {args.max_probes}: at least 2 (fp32 and the target).")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise ConfigError(f"--max-minutes {args.max_minutes:g}: a positive number of minutes.")
    if args.ranking_subset < 1:
        raise ConfigError(f"--ranking-subset {args.ranking_subset}: at least 1 utterance.")
    if not ranked and (args.history is not None or args.fresh):
        raise ConfigError(f"--history/--fresh record the ranked search (--target int8|fp8); "
                          f"the {args.target} bisection is not resumable.")
    if ranked and args.typed:
        raise ConfigError("--typed is for fp16/bf16: an int8/fp8 search is always typed "
                          "(Q/DQ in the graph).")
    return budget


@dataclass
class _Setup:
    """What both searches share: the loaded settings and the in-process evaluation."""

    settings: Any
    model: Any
    utterances: list[Any]
    decoder: Any
    cache: Any
    builder: Any
    threads: int

    def stream(self, path: Path, engine: Engine) -> list[np.ndarray]:
        from sweep.evaluate.reference import OrtPipeline

        level = engine.runtime.get("graph_optimization_level", "ORT_ENABLE_ALL")
        run = OrtPipeline(self.model, path, graph_optimization_level=level,
                          threads=self.threads,
                          fp16_features=self.settings.eval.fp16_features).run(self.utterances)
        return [np.asarray(r.logprobs) for r in run.results]

    def calibration(self) -> Any:
        from sweep.precision.calibration import collect

        return collect(self.model, self.settings.dataset.load_calibration(),
                       self.settings.dataset.calibration_utterances,
                       cache_dir=self.settings.builder.derived_dir)


def _setup(args: argparse.Namespace) -> _Setup:
    from sweep.builder.cache import EngineCache
    from sweep.builder.emulate import EmulateBuilder

    settings = loader.load(loader.ConfigOptions.from_args(args), "precision_search")
    if settings.builder.name != "emulate":
        raise ConfigError(f"builder={settings.builder.name}: precision-search probes build "
                          "with the emulator (builder=emulate); sweep the flag set it writes "
                          "with builder=trtexec on a GPU host.")
    model = settings.model_interface()
    model.tensors()
    return _Setup(settings, model, settings.dataset.load(), settings.decoder.build(),
                  EngineCache(settings.builder.cache_dir),
                  EmulateBuilder(intra_op_num_threads=args.threads), args.threads)


def _store(setup: _Setup) -> Any:
    tracking = setup.settings.tracking
    return open_store(tracking.uri, tracking.experiment, tracking.artifact_root, Path.cwd())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    budget = _check_args(args)
    setup = _setup(args)
    if args.target in RANKED:
        return _ranked(args, budget, setup)
    return _bisect(args, budget, setup)


# -- int8 / fp8: the ranked fallback search ---------------------------------------------------

def _ranked(args: argparse.Namespace, budget: Budget, setup: _Setup) -> int:
    import onnx

    from sweep.infra.files import PROJECT_ROOT, file_digest
    from sweep.precision.realise import QUANTIZED_OPS, TypedModel, realise
    from sweep.precision_search.history import History
    from sweep.precision_search.probes import StreamingProbes, keep_flags
    from sweep.precision_search.ranked import RankedSearch, StopSearch

    settings, model, target = setup.settings, setup.model, args.target
    granularity = args.granularity or "node"
    configured = FlagSet.from_mapping(settings.trt)
    if configured.layer_precisions or configured.layer_output_types:
        raise ConfigError("trt.layer_precisions is set: the search finds which nodes stay in "
                          "float, starting from none. Drop the override.")
    base = replace(configured, strongly_typed=True, precision=target,
                   precision_constraints="none", layer_precisions=(), layer_output_types=())
    base.validate()
    calibration = setup.calibration()

    def realise_flags(flags: FlagSet) -> TypedModel:
        return realise(model.onnx_path, flags, settings.builder.derived_dir, calibration)

    def build(path: Path, flags: FlagSet) -> Engine:
        return setup.cache.build(setup.builder, path, flags, "cpu")

    print(f"precision search: quantising {model.onnx_path.name} to {target} "
          "(ModelOpt, calibrated on streamed audio)...", file=sys.stderr, flush=True)
    plain = realise_flags(base)
    groups = qdq.groups(onnx.load(str(plain.path), load_external_data=False),
                        QUANTIZED_OPS[target], granularity)
    identity = {"target": target, "model": file_digest(model.onnx_path),
                "plain_typed": plain.digest, "base_flags": base.digest,
                "dataset": settings.dataset.name,
                "utterances": hashlib.sha256(json.dumps(
                    [u.id for u in setup.utterances]).encode()).hexdigest()[:16],
                "decoder": settings.decoder.name, "granularity": granularity,
                "ranking_subset": args.ranking_subset,
                "fp16_features": settings.eval.fp16_features,
                # how groups are scored: 2 = variants built by the emulator, as probes are
                "scoring": 2}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    history_path = args.history or settings.builder.derived_dir / "precision_search" / key / \
        "history.jsonl"
    if args.fresh and history_path.exists():
        aside = history_path.with_name(f"{history_path.stem}.{time.strftime('%Y%m%d-%H%M%S')}"
                                       f"{history_path.suffix}")
        history_path.rename(aside)
        print(f"the earlier record was set aside as {aside}", file=sys.stderr)
    history = History(history_path)
    history.check_identity(identity)
    if "identity" not in history.meta:
        history.set_meta(identity=identity)
    name = f"{target}_search"
    output = args.output or PROJECT_ROOT / "conf" / "trt" / f"{name}.yaml"
    runs = SearchRuns(_store(setup), f"precision search {target} ({budget.describe()})", {
        "search.target": target, "search.strategy": "ranked",
        "search.granularity": granularity, "search.groups": len(groups),
        "search.nodes": sum(len(g.nodes) for g in groups),
        "search.ranking_subset": args.ranking_subset, "search.history": str(history_path),
        "model.onnx_path": model.onnx_path, "dataset.name": settings.dataset.name,
        "dataset.utterances": len(setup.utterances), "decoder.name": settings.decoder.name,
        **base.params()},
        resume_id=history.meta.get("parent_run_id"),
        tags={"search.budget": budget.describe(),
              "search.max_probes": str(args.max_probes or 50),
              "search.max_minutes": str(args.max_minutes or "-")})
    if history.meta.get("parent_run_id") != runs.run_id:
        history.set_meta(parent_run_id=runs.run_id)
    resuming = f" (resuming: {len(history.evals)} evaluations recorded)" \
        if history.resumed else ""
    print(f"precision search: {target}, {budget.describe()}, {len(groups)} quantised "
          f"{'nodes' if granularity == 'node' else 'modules'}, {len(setup.utterances)} "
          f"utterances; MLflow parent run {runs.run_id}; record {history_path}"
          f"{resuming}",
          file=sys.stderr, flush=True)
    from sweep.builder.emulate import EmulateBuilder

    # Ranking variants are built by the same emulator, outside the engine cache (dozens per
    # round, each used once), without the builder's own session check (the stream is one).
    variant_builder = EmulateBuilder(intra_op_num_threads=setup.threads, check_session=False)

    def build_variant(path: Path, flags: FlagSet, workdir: Path) -> Engine:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        return variant_builder.build(path, flags, workdir)

    probes = StreamingProbes(model, setup.utterances, setup.decoder.decode, base,
                             realise_flags, build, history_path,
                             build_variant=build_variant, threads=setup.threads,
                             fp16_features=settings.eval.fp16_features)
    workdir = Path(tempfile.mkdtemp(prefix="precision-search-"))

    def flags_of(keeps: tuple[str, ...], phase: str) -> FlagSet:
        return probes.baseline_flags() if phase == "baseline" else keep_flags(base, keeps)

    search = RankedSearch(
        probes, groups, budget, history, max_probes=args.max_probes or 50,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
        subset_limit=args.ranking_subset,
        on_step=lambda step: runs.step(step, flags_of(step.keeps, step.phase)),
        on_round=lambda rnd: runs.ranking(rnd, workdir),
        say=lambda line: print(line, file=sys.stderr, flush=True))

    def leave_record() -> list[Path]:
        files = []
        if search.steps:
            files.append(workdir / "probes.csv")
            write_steps_csv(search.steps, files[-1])
        if len(search.steps) >= 2:
            baseline = search.steps[0].result.wer
            files.append(plot_wer_against_kept(
                search.steps, budget.wer_bound(baseline), workdir / "wer_vs_kept.png",
                f"{target} on {settings.dataset.name}: WER against nodes kept in float",
                budget.max_frame_flips))
        return files

    status = "FAILED"
    try:
        result = search.run()
        final, baseline = result.final, result.baseline
        plain_wer = search.steps[1].result.wer
        flags = keep_flags(base, final.keeps)
        header = [
            f"Written by python -m sweep.precision_search --target {target} (MLflow run "
            f"{runs.run_id}):",
            f"{target}, strongly typed, with {len(final.keeps)} of "
            f"{sum(len(g.nodes) for g in groups)} quantised nodes kept in FP32, "
            f"{result.probes} probes, {result.seconds / 60:.1f} min.",
            f"Budget: {budget.describe(baseline.wer)}, on {settings.dataset.name} "
            f"({len(setup.utterances)} utterances), decoder {settings.decoder.name}.",
            f"fp32 WER {units.percent(baseline.wer)}; plain {target} "
            f"{units.percent(plain_wer)}; this flag set {units.percent(final.result.wer)} "
            f"(frame flips {final.result.frame_flips:.5f}, probe {final.n}).",
            f"Model {model.onnx_path.name}; the search's record is the parent run's "
            "search.history param.",
            f"Use: python -m sweep trt={output.stem}",
        ]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(flag_set_yaml(flags, header), encoding="utf-8")
        files = [output, *leave_record()]
        status = "FINISHED"
        runs.finish(status, {
            "baseline_wer": baseline.wer, "plain_wer": plain_wer,
            "final_wer": final.result.wer, "final_frame_flips": final.result.frame_flips,
            "probes": float(result.probes), "rankings": float(len(result.rounds)),
            "nodes_in_float": float(len(final.keeps)), "search_seconds": result.seconds},
            files)
        print(f"\n{len(final.keeps)} node(s) kept in float, {result.probes} probes, "
              f"{len(result.rounds)} ranking round(s), {result.seconds / 60:.1f} min of "
              "evaluation:", file=sys.stderr)
        for node in final.keeps:
            print(f"  {node}", file=sys.stderr)
        print(f"WER: fp32 {units.percent(baseline.wer)}, plain {target} "
              f"{units.percent(plain_wer)}, this flag set {units.percent(final.result.wer)}; "
              f"written to {output}", file=sys.stderr)
        return 0
    except StopSearch:
        runs.finish("FAILED", {"probes": float(len(search.steps))}, leave_record())
        status = "RECORDED"
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status in ("FAILED", "KILLED"):
            runs.finish(status)
        import shutil

        # The scratch of the ranking (a variant model and its engine; the round tables,
        # logged already); the record and fp32's log-probabilities stay for a resume.
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(probes.scratch, ignore_errors=True)


# -- fp16 / bf16: the bisection ---------------------------------------------------------------

def _bisect(args: argparse.Namespace, budget: Budget, setup: _Setup) -> int:
    from sweep.infra.files import PROJECT_ROOT
    from sweep.model import read_onnx

    settings, model = setup.settings, setup.model
    granularity = args.granularity or "auto"
    base = FlagSet.from_mapping(settings.trt)

    def transcribe(path: Path, engine: Engine) -> tuple[list[str], list[np.ndarray]]:
        logprobs = setup.stream(path, engine)
        return [setup.decoder.decode(lp) for lp in logprobs], logprobs

    calibration = None
    if args.typed:
        calibration = setup.calibration()
        base = replace(base, strongly_typed=True, precision_constraints="none")

    def build(flags: FlagSet) -> Engine:
        from sweep.precision.realise import realise

        # Typed probes build from their typed ONNX (its digest keys the engine cache).
        source = realise(model.onnx_path, flags, settings.builder.derived_dir,
                         calibration).path if flags.in_graph else model.onnx_path
        return setup.cache.build(setup.builder, source, flags, "cpu")

    evaluate = Evaluator([u.text for u in setup.utterances], transcribe, build)
    candidates = pinning.candidates(read_onnx(model.onnx_path), args.target)
    name = f"{args.target}_{'typed_' if args.typed else ''}search"
    output = args.output or PROJECT_ROOT / "conf" / "trt" / f"{name}.yaml"
    runs = SearchRuns(_store(setup), f"precision search {args.target} ({budget.describe()})", {
        "search.target": args.target, "search.strategy": "bisect",
        "search.granularity": granularity, "search.max_probes": args.max_probes or 200,
        "search.candidates": len(candidates), "model.onnx_path": model.onnx_path,
        "dataset.name": settings.dataset.name, "dataset.utterances": len(setup.utterances),
        "decoder.name": settings.decoder.name, **budget.params(), **base.params()})
    print(f"precision search: {args.target}, {budget.describe()}, {len(candidates)} candidate "
          f"nodes, {len(setup.utterances)} utterances; MLflow parent run {runs.run_id}",
          file=sys.stderr)
    search = Search(evaluate, base, args.target, budget, candidates, granularity,
                    args.max_probes or 200,
                    max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
                    on_probe=runs.probe,
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
            f"{'' if result.complete else ' (stopped by --max-probes/--max-minutes: '}"
            f"{'' if result.complete else 'not minimal)'}.",
            f"Budget: {budget.describe(result.baseline.wer)}, on {settings.dataset.name} "
            f"({len(setup.utterances)} utterances), decoder {settings.decoder.name}.",
            f"fp32 WER {units.percent(result.baseline.wer)}; this flag set: WER "
            f"{units.percent(result.final.score.wer)}, frame flips "
            f"{result.final.score.frame_flips:.5f}.",
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
        print(f"WER {units.percent(result.final.score.wer)} (fp32 "
              f"{units.percent(result.baseline.wer)}); written to {output}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            runs.finish(status)


def entry() -> None:
    cli.exit_with(lambda: cli.guard(
        main, "precision_search",
        interrupted="interrupted; the MLflow run was marked KILLED. For int8/fp8 the same "
                    "command resumes the search from its record."))
