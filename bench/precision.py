"""What the precision stage adds to a job: calibration and the typed ONNX (AutoCast for
fp16/bf16, Q/DQ quantisation for int8), against the emulated build and the evaluation of
the same job, measured in the same run.

For each precision, per round: collect the calibration data (streaming
``dataset.calibration`` through the fp32 model), realise the flag set in the graph into a
fresh cache (so nothing is reused), build the emulated engine from the typed ONNX, and
evaluate it in-process on the test set (ONNX Runtime, the sweep's chunking and state round
trip; Triton's own costs are the same with or without the stage). Reported: each part's
seconds (median of the rounds) and the stage's cost as a ratio to build + evaluation.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    bench_parser,
    demo_model,
    machine_line,
    publish,
    table,
    utterances,
)

CALIBRATION = Path(__file__).resolve().parents[1] / "demo" / "assets" / "data" / "demo_calib"


def one_round(model: Any, precision: str, test: list[Any], calibration_n: int
              ) -> dict[str, float]:
    from sweep.builder.emulate import EmulateBuilder
    from sweep.data.manifest import load_manifest
    from sweep.evaluate.reference import OrtPipeline
    from sweep.flags import FlagSet
    from sweep.precision.calibration import collect
    from sweep.precision.realise import realise

    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": precision,
                                  "tf32": False})
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        t0 = time.perf_counter()
        calibration = collect(model, load_manifest(CALIBRATION), calibration_n)
        t1 = time.perf_counter()
        typed = realise(model.onnx_path, flags, Path(tmp) / "cache", calibration)
        t2 = time.perf_counter()
        engine = EmulateBuilder().build(typed.path, flags, Path(tmp) / "engine")
        t3 = time.perf_counter()
        OrtPipeline(model, engine.path, graph_optimization_level=engine.runtime[
            "graph_optimization_level"]).run(test)
        t4 = time.perf_counter()
    return {"calibration_s": t1 - t0, "realise_s": t2 - t1, "build_s": t3 - t2,
            "eval_s": t4 - t3}


def main() -> None:
    ap = bench_parser(__doc__, repeat=2)
    ap.add_argument("--utterances", type=int, default=40, help="test utterances evaluated")
    ap.add_argument("--calibration", type=int, default=8, help="calibration utterances")
    ap.add_argument("--precisions", default="fp16,bf16,int8")
    args = ap.parse_args()
    model = demo_model()
    test = utterances(args.utterances)
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for precision in args.precisions.split(","):  # interleaved: drift hits all alike
            results.setdefault(precision, []).append(
                one_round(model, precision, test, args.calibration))
    rows = []
    for precision, rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        stage = med["calibration_s"] + med["realise_s"]
        rows.append([precision, med["calibration_s"], med["realise_s"], med["build_s"],
                     med["eval_s"], stage / (med["build_s"] + med["eval_s"])])
    text = table(["precision", "calibration s", "typed ONNX s", "emulated build s",
                  f"evaluation s ({len(test)} utt.)", "stage / (build + evaluation)"], rows)
    section = (f"## Precision stage: what realising a flag set in the graph costs a job\n\n"
               f"{machine_line()}\n\n`python -m bench.precision` ({args.repeat} interleaved "
               f"rounds, medians; {args.calibration} calibration utterances from "
               f"demo_calib, a fresh cache each round).\n\n{text}\n\nThe typed ONNX is "
               "cached by content: a sweep pays this once per flag set, and a job whose "
               "typed ONNX exists pays nothing.")
    publish("precision", section, results, write=args.write)


if __name__ == "__main__":
    main()
