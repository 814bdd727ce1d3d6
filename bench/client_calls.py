"""What a request costs the client: unary gRPC calls from asyncio (what the sweep's
streamer makes) against one bidirectional gRPC stream carrying every request
(tritonclient's ``stream_infer``), blocking calls from one thread per request in flight,
and chained callbacks with no event loop (tritonclient's ``async_infer``); 16 requests in
flight each.

The model is tiny (a 20x160 MatMul), so the figures are the calls' own cost, not the
model's: client CPU milliseconds per request (this process's CPU time) and requests per
second, interleaved rounds, ratios against unary measured in the same run. It answers
whether another way of calling would leave more CPU for the model at 16 streams
(targets 1 and 2).

The server runs with the sweep's settings (ServingOptions).

Run: python -m bench.client_calls [--requests 3000] [--repeat 3]
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    bench_parser,
    machine_line,
    median,
    save_json,
    table,
    write_section,
)
from sweep.engine import Engine, EngineFormat
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.serve import serve
from tests.support.models import tiny_monolithic_onnx


def _inputs(module: Any) -> list[Any]:
    """The requests' tensors, built with ``module`` (tritonclient.grpc or its aio twin)."""
    signal = module.InferInput("signal", [1, 3200, 1], "INT32")
    signal.set_data_from_numpy(np.ones((1, 3200, 1), np.int32))
    state = module.InferInput("state", [1, 10], "FP32")
    state.set_data_from_numpy(np.zeros((1, 10), np.float32))
    return [signal, state]


async def unary(url: str, requests: int, inflight: int) -> tuple[float, float]:
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    tensors = _inputs(aio)

    async def lane() -> None:
        for _ in range(requests // inflight):
            await client.infer("model", tensors, client_timeout=30)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.close()
    return wall, cpu


async def bidirectional(url: str, requests: int, inflight: int) -> tuple[float, float]:
    import tritonclient.grpc.aio as aio

    client = aio.InferenceServerClient(url)
    tensors = _inputs(aio)
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    waiting: dict[str, asyncio.Future[Any]] = {}

    async def requests_out() -> Any:
        while (item := await outbox.get()) is not None:
            yield item

    responses = client.stream_infer(requests_out())

    async def read() -> None:
        async for result, error in responses:
            if error is not None:
                raise RuntimeError(error)
            waiting.pop(result.get_response().id).set_result(result)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    counter = iter(range(10**9))

    async def lane() -> None:
        for _ in range(requests // inflight):
            rid = str(next(counter))
            waiting[rid] = loop.create_future()
            await outbox.put({"model_name": "model", "inputs": tensors, "request_id": rid})
            await waiting[rid]

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await outbox.put(None)
    reader.cancel()
    await client.close()
    return wall, cpu


def threads(url: str, requests: int, inflight: int) -> tuple[float, float]:
    """Blocking calls, one thread per request in flight (one shared channel)."""
    import threading

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensors = _inputs(grpcclient)

    def lane() -> None:
        for _ in range(requests // inflight):
            client.infer("model", tensors, client_timeout=30)

    workers = [threading.Thread(target=lane) for _ in range(inflight)]
    wall, cpu = time.perf_counter(), time.process_time()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.close()
    return wall, cpu


def callbacks(url: str, requests: int, inflight: int) -> tuple[float, float]:
    """No event loop: each response's callback (on gRPC's thread) sends the next request.
    Run outside asyncio: inside a running event loop it was seen to hang."""
    import threading

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensors = _inputs(grpcclient)
    left = [requests // inflight] * inflight
    finished = threading.Semaphore(0)
    errors: list[Any] = []

    def send(lane: int) -> None:
        def done(result: Any, error: Any) -> None:  # tritonclient passes keywords
            left[lane] -= 1
            if error is not None:
                errors.append(error)
            if error is not None or left[lane] == 0:
                finished.release()
            else:
                send(lane)
        client.async_infer("model", tensors, done, client_timeout=30)

    wall, cpu = time.perf_counter(), time.process_time()
    for lane in range(inflight):
        send(lane)
    for _ in range(inflight):
        finished.acquire()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.close()
    if errors:
        raise RuntimeError(errors[0])
    return wall, cpu


def main() -> None:
    ap = bench_parser(__doc__, repeat=3)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--inflight", type=int, default=16)
    args = ap.parse_args()

    header = machine_line()
    print(header, flush=True)
    modes = {"unary calls (the streamer)": unary, "one bidirectional stream": bidirectional,
             f"blocking calls from {args.inflight} threads": threads,
             "callbacks, no event loop": callbacks}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = tiny_monolithic_onnx(Path(tmp) / "tiny.onnx")
        model = ModelInterface(name="tiny", onnx_path=onnx_path,
                               contract=Contract.MONOLITHIC, audio_input="signal",
                               logprobs_output="logprobs",
                               states=(StatePair("state", "state_next"),))
        engine = Engine(path=onnx_path, format=EngineFormat.ONNX_EMULATED, flags=FlagSet(),
                        builder="none", builder_version="0", build_seconds=0.0,
                        log_path=onnx_path)
        with serve(model, engine, LocalServer(), Path(tmp), ServingOptions()) as served:
            endpoint = served.endpoint
            asyncio.run(unary(endpoint.grpc_url, 200, args.inflight))  # warm up
            for _ in range(args.repeat):
                for name, fn in modes.items():
                    outcome: Any = fn(endpoint.grpc_url, args.requests, args.inflight)
                    if asyncio.iscoroutine(outcome):
                        outcome = asyncio.run(outcome)
                    runs[name].append(outcome)
    n = args.requests // args.inflight * args.inflight
    result = {name: {"requests_per_s": median([n / w for w, _ in r]),
                     "client_cpu_ms": median([1000 * c / n for _, c in r])}
              for name, r in runs.items()}
    save_json("client_calls", result)
    base = result["unary calls (the streamer)"]
    rows = [[name, v["requests_per_s"], v["requests_per_s"] / base["requests_per_s"],
             v["client_cpu_ms"], v["client_cpu_ms"] / base["client_cpu_ms"]]
            for name, v in result.items()]
    md = ["## What a request costs the client (bench/client_calls.py)\n", header, "",
          f"A tiny model, {args.inflight} requests in flight, {n} requests per "
          f"run, medians of {args.repeat} interleaved rounds.\n",
          table(["client", "requests / s", "x unary", "client CPU ms / request",
                 "x unary"], rows)]
    text = "\n".join(md)
    print(text)
    if args.write:
        write_section("client_calls", text)


if __name__ == "__main__":
    main()
