"""The client's two transports give the same numbers: gRPC payloads and system shared
memory, for both model contracts, 1 and 4 streams, against in-process ONNX Runtime.

Not a benchmark: the check that the shared-memory transport (sweep/evaluate/stream.py,
GrpcStreamer(transport=...)) changes speed only. Exits non-zero on any difference.

Run: python -m bench.check_transport [--utterances 8]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.common import OUT, ROOT, bench_parser, fp32_engine, utterances
from sweep.model import Contract, ModelInterface, StatePair
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.serve import serve


def models() -> dict[str, ModelInterface]:
    assets = ROOT / "demo" / "assets"
    found: dict[str, ModelInterface] = {}
    mono = assets / "demo_monolithic.onnx"
    if mono.exists():
        found["monolithic"] = ModelInterface(
            name="demo_monolithic", onnx_path=mono, contract=Contract.MONOLITHIC,
            audio_input="signal", logprobs_output="logprobs",
            states=(StatePair("state", "state_next"),))
    skip = assets / "demo_skip_preprocessor.onnx"
    if skip.exists():
        found["skip_preprocessor"] = ModelInterface(
            name="demo_skip_preprocessor", onnx_path=skip,
            contract=Contract.SKIP_PREPROCESSOR, audio_input="audio_signal",
            logprobs_output="logprobs", length_input="length",
            states=(StatePair("cache_last_time", "cache_last_time_next"),
                    StatePair("cache_last_channel", "cache_last_channel_next"),
                    StatePair("cache_last_chan_len", "cache_last_chan_len_next")))
    return found


def main() -> None:
    ap = bench_parser(__doc__, write=None)  # a check: no rounds, no RESULTS.md section
    ap.add_argument("--utterances", type=int, default=8)
    args = ap.parse_args()

    from sweep.evaluate.reference import OrtPipeline
    from sweep.evaluate.stream import GrpcStreamer

    utts = utterances(args.utterances)
    failures = 0
    for contract, model in models().items():
        engine = fp32_engine(model)
        reference = OrtPipeline(model, engine.path, graph_optimization_level=str(
            engine.runtime["graph_optimization_level"])).run(utts)
        with serve(model, engine, LocalServer(), OUT / f"check-{contract}",
                   ServingOptions()) as served:
            ep = served.endpoint
            runs = {}
            for transport in ("grpc", "shm", "auto"):
                for streams in (1, 4):
                    s = GrpcStreamer(model, ep.grpc_url, ep.model_name, streams=streams,
                                     transport=transport)
                    runs[(transport, streams)] = (s.run(utts), s.used_transport)
        base = runs[("grpc", 1)][0]
        for (transport, streams), (run, used) in runs.items():
            same_ids = [r.utterance.id for r in run.results] == [u.id for u in utts]
            exact = all(np.array_equal(a.logprobs, b.logprobs)
                        for a, b in zip(run.results, base.results, strict=True))
            vs_ort = max(float(np.abs(a.logprobs - b.logprobs).max())
                         for a, b in zip(run.results, reference.results, strict=True))
            ok = same_ids and (exact or streams > 1) and vs_ort < 1e-3
            failures += not ok
            print(f"{contract:18s} {transport:4s}->{used:4s} streams {streams}: order "
                  f"{'ok' if same_ids else 'WRONG'}, bitwise = grpc/1 stream: {exact}, "
                  f"max |diff| vs ONNX Runtime {vs_ort:.2e} {'OK' if ok else 'FAIL'}")
    leftovers = [p.name for p in Path("/dev/shm").glob("trt_sweep_*")]
    if leftovers:
        print(f"shared memory left behind: {leftovers}")
        failures += 1
    print(f"{OUT}: {'all transports agree' if not failures else f'{failures} failure(s)'}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
