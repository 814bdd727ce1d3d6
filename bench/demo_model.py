"""What the shipped demo model costs per streamed chunk on the CPU, against the model it
replaced, measured in the same run.

Each model is the monolithic 400 ms export run by ONNX Runtime's CPU provider on one thread
at batch 1 (the emulated engine's setting per instance): per round, ``--chunks`` chunks of
the shipped test set's audio through each model in turn, the state carried. The baseline
is the architecture shipped before the open-vocabulary retraining (d_model 144, 6 layers),
exported with random weights, which cost the same as trained ones. Reported: median ms per
chunk and the ratio to the baseline (the budget: at most 2x).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_parser, machine_line, publish, table

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "demo" / "assets" / "demo_monolithic.onnx"
TEST_SET = ROOT / "demo" / "assets" / "data" / "demo_test"
BASELINE = {"d_model": 144, "n_layers": 6}


def export_untrained(config: dict[str, int], out: Path) -> Path:
    import torch

    from demo.export import export_model
    from demo.model import DemoConformer, ModelConfig

    torch.manual_seed(0)
    return export_model(DemoConformer(ModelConfig(**config)).eval(), 400, "monolithic", out)


def shipped_size() -> str:
    from sweep.model import read_onnx

    meta = {p.key: p.value for p in read_onnx(SHIPPED, load_weights=False).metadata_props}
    config = json.loads(meta["model_config"])
    return f"{config['d_model']} x {config['n_layers']}"


def session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def chunks(n: int) -> np.ndarray:
    from demo.export import pad_and_chunk, read_manifest

    out = [pad_and_chunk(audio, 3200, 300) for audio, _ in read_manifest(TEST_SET, limit=20)]
    return np.concatenate(out)[:n]


def per_chunk_ms(sess: Any, audio: np.ndarray) -> float:
    state = np.zeros((1, int(sess.get_inputs()[1].shape[1])), np.float32)
    times = []
    for chunk in audio:
        start = time.perf_counter()
        _, state = sess.run(None, {"signal": chunk[None, :, None].astype(np.int32),
                                   "state": state})
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[5:])  # the first chunks warm ONNX Runtime up


def main() -> None:
    ap = bench_parser(__doc__, repeat=5)
    ap.add_argument("--chunks", type=int, default=100)
    args = ap.parse_args()
    audio = chunks(args.chunks)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"baseline (144 x 6, before)": export_untrained(BASELINE, Path(tmp) / "b.onnx"),
                  f"shipped ({shipped_size()})": SHIPPED}
        sessions = {name: session(path) for name, path in models.items()}
        rounds: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeat):
            for name, sess in sessions.items():  # interleaved: drift hits all alike
                rounds[name].append(per_chunk_ms(sess, audio))
    base = statistics.median(rounds["baseline (144 x 6, before)"])
    rows = [[name, statistics.median(r), statistics.median(r) / base]
            for name, r in rounds.items()]
    text = table(["model", "ms per 400 ms chunk", "ratio to baseline"], rows)
    section = (f"## Demo model: CPU cost per chunk\n\n{machine_line()}\n\n`python -m "
               f"bench.demo_model` ({args.repeat} interleaved rounds of {len(audio)} chunks, "
               f"medians; ONNX Runtime CPU, 1 thread, batch 1).\n\n{text}")
    publish("demo_model", section, rounds, write=args.write)


if __name__ == "__main__":
    main()
