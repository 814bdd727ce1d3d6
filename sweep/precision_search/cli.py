"""``python -m sweep.precision_search``: the layers that must stay FP32 for an fp16/bf16
engine to keep its accuracy, written as a ready flag set.

    python -m sweep.precision_search --target bf16 --wer-budget 0.005 dataset=demo_test
    python -m sweep trt=bf16_search      # sweep with the flag set it wrote (conf/trt/)

Arguments after the options are the sweep's own Hydra overrides (model, dataset, decoder,
tracking, builder.cache_dir, trt.opt_level, trt.tf32, ...).

The search (sweep/precision_search/pinning.py): a baseline probe (the same flag set in fp32, nothing
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
rounds tensor storage, not kernel internals (builder/emulate.py): on a GPU host, sweep the
written flag set with builder=trtexec to confirm it, and pin more if a real engine needs it.

MLflow: a parent run (tag ``trt-sweep.kind=precision_search``) with one child run per
probe (``probe``): its pins, WER, CER, frame flips, pass/fail; the parent gets the result,
``probes.csv`` and the written YAML.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sweep import cli
from sweep.engine import Engine
from sweep.errors import ConfigError
from sweep.flags import FlagSet
from sweep.precision_search import pinning
from sweep.precision_search.outputs import SearchRuns, flag_set_yaml, write_probes_csv
from sweep.precision_search.search import GRANULARITIES, TARGETS, Criteria, Evaluator, Search
from sweep.tracking.store import open_store


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
    p.add_argument("--typed", action="store_true",
                   help="search the exclusions of a flag set realised in the graph (AutoCast, "
                        "strongly typed: what TensorRT 11 builds) instead of weak pins")
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
    from sweep.builder.cache import EngineCache
    from sweep.builder.emulate import EmulateBuilder
    from sweep.config import JobSettings
    from sweep.evaluate.reference import OrtPipeline
    from sweep.infra.files import PROJECT_ROOT
    from sweep.model import read_onnx

    settings = JobSettings.from_cfg(_compose(args.overrides))
    if settings.builder.name != "emulate":
        raise ConfigError(f"builder={settings.builder.name}: precision-search probes build "
                          "with the emulator (builder=emulate); sweep the flag set it writes "
                          "with builder=trtexec on a GPU host.")
    model = settings.model_interface()
    model.tensors()
    utterances = settings.dataset.load()
    base = FlagSet.from_mapping(settings.trt)
    decoder = settings.decoder.build()
    cache = EngineCache(settings.builder.cache_dir)
    builder = EmulateBuilder(intra_op_num_threads=args.threads)

    def transcribe(path: Path, engine: Engine) -> tuple[list[str], list[np.ndarray]]:
        level = engine.runtime.get("graph_optimization_level", "ORT_ENABLE_ALL")
        run = OrtPipeline(model, path, graph_optimization_level=level, threads=args.threads,
                          fp16_features=settings.eval.fp16_features).run(utterances)
        return ([decoder.decode(r.logprobs) for r in run.results],
                [np.asarray(r.logprobs) for r in run.results])

    calibration = None
    if args.typed:
        from sweep.precision.calibration import collect

        calibration = collect(model, settings.dataset.load_calibration(),
                              settings.dataset.calibration_utterances,
                              cache_dir=settings.builder.derived_dir)
        base = replace(base, strongly_typed=True, precision_constraints="none")

    def build(flags: FlagSet) -> Engine:
        from sweep.precision.realise import realise

        # Typed probes build from their typed ONNX (its digest keys the engine cache).
        source = realise(model.onnx_path, flags, settings.builder.derived_dir,
                         calibration).path if flags.in_graph else model.onnx_path
        return cache.build(builder, source, flags, "cpu")

    evaluate = Evaluator([u.text for u in utterances], transcribe, build)
    candidates = pinning.candidates(read_onnx(model.onnx_path), args.target)
    criteria = Criteria(args.wer_budget, args.max_frame_flips)
    name = f"{args.target}_{'typed_' if args.typed else ''}search"
    output = args.output or PROJECT_ROOT / "conf" / "trt" / f"{name}.yaml"
    tracking = settings.tracking
    store = open_store(tracking.uri, tracking.experiment, tracking.artifact_root, Path.cwd())
    runs = SearchRuns(store, f"precision search {args.target} ({criteria.describe()})", {
        "search.target": args.target, "search.wer_budget": args.wer_budget,
        "search.max_frame_flips": args.max_frame_flips, "search.granularity": args.granularity,
        "search.max_probes": args.max_probes, "search.candidates": len(candidates),
        "model.onnx_path": model.onnx_path, "dataset.name": settings.dataset.name,
        "dataset.utterances": len(utterances), "decoder.name": settings.decoder.name,
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
            f"Criterion: {criteria.describe()}, on {settings.dataset.name} "
            f"({len(utterances)} utterances), decoder {settings.decoder.name}.",
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
