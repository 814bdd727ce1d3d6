"""The local tritonserver: loopback only, nothing left behind (not even the python backend's
shared memory when the server was killed), and one kept server swapping the jobs' models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sweep.engine import Engine, EngineFormat
from sweep.errors import ServerError
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.server.base import ModelRepository, ServingOptions
from sweep.server.local import LocalServer, _stub_shm_regions, close_kept
from sweep.server.repository import render
from tests.support.models import tiny_monolithic_onnx
from tests.support.processes import our_processes

pytestmark = pytest.mark.integration


def test_command_binds_loopback_and_skips_auto_complete(tmp_path: Path):
    command = LocalServer(cache_dir=str(tmp_path)).command(tmp_path, 8001, 8000)
    assert "--grpc-address=127.0.0.1" in command and "--http-address=127.0.0.1" in command
    assert "--disable-auto-complete-config" in command


def test_killed_server_leaves_no_process_and_no_shared_memory(tiny_onnx: Path,
                                                              tmp_path: Path):
    model = ModelInterface(name="tiny", onnx_path=tiny_onnx, contract=Contract.MONOLITHIC,
                           audio_input="signal", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    engine = Engine(path=tiny_onnx, format=EngineFormat.ONNX_EMULATED, flags=FlagSet(),
                    builder="none", builder_version="0", build_seconds=0.0, log_path=tiny_onnx)
    server = LocalServer()
    repository = render(model, engine, tmp_path / "repo", site_packages=server.site_packages(),
                        options=ServingOptions(instances=2))
    regions: list[Path] = []
    with pytest.raises(ServerError, match="killed by signal SIGKILL"), \
            server.serving(repository, tmp_path / "server.log") as endpoint:
        assert endpoint.startup_seconds > 0
        pid = next(p for p in our_processes()
                   if "tritonserver" in _cmdline(p) and str(repository.path) in _cmdline(p))
        regions = _stub_shm_regions(os.getpgid(pid))
        assert len(regions) == 2 and all(r.exists() for r in regions)
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert regions and not any(r.exists() for r in regions)
    assert our_processes() == []


OWNER = """
import sys, time
from pathlib import Path
from sweep.server.base import ModelRepository
from sweep.server.local import LocalServer
repository = ModelRepository(path=Path(sys.argv[1]), entry_model=sys.argv[2],
                             models=tuple(sys.argv[4].split(",")), configs=())
with LocalServer().serving(repository, Path(sys.argv[3])):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_sweep_whose_children_are_killed_one_by_one_leaves_no_stub(tmp_path: Path):
    # A Ray worker that exits SIGKILLs each of its direct children; the python-backend
    # stubs of a server killed that way can hang on their way out (stopped here, so they
    # cannot leave by themselves). The detached watchdog must still end them.
    server = LocalServer()
    repository = _tiny_repository(tmp_path, "owned", 20, server)
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(repository.path),
                              repository.entry_model, str(tmp_path / "server.log"),
                              ",".join(repository.models)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        children = [p for p in our_processes() if _ppid(p) == owner.pid]
        stubs = [p for p in our_processes() if "python_backend_stub" in _cmdline(p)]
        assert any("tritonserver" in _cmdline(p) for p in children)
        assert len(stubs) == 2
        for stub in stubs:
            os.kill(stub, signal.SIGSTOP)
        for pid in [*children, owner.pid]:
            os.kill(pid, signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while our_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert our_processes() == []
    finally:
        for pid in our_processes():
            os.kill(pid, signal.SIGKILL)
        owner.kill()
        owner.wait()


def _ppid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("PPid:")))


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")


def _tiny_repository(tmp_path: Path, name: str, frames: int, server: LocalServer
                     ) -> ModelRepository:
    onnx_path = tiny_monolithic_onnx(tmp_path / f"{name}.onnx", frames=frames)
    model = ModelInterface(name="tiny", onnx_path=onnx_path, contract=Contract.MONOLITHIC,
                           audio_input="signal", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    engine = Engine(path=onnx_path, format=EngineFormat.ONNX_EMULATED, flags=FlagSet(),
                    builder="none", builder_version="0", build_seconds=0.0, log_path=onnx_path)
    return render(model, engine, tmp_path / name, site_packages=server.site_packages(),
                  options=ServingOptions(instances=2))


def _frames_served(grpc_url: str, model_name: str) -> int:
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        signal_in = grpcclient.InferInput("signal", [1, 3200, 1], "INT32")
        signal_in.set_data_from_numpy(np.ones((1, 3200, 1), np.int32))
        state_in = grpcclient.InferInput("state", [1, 10], "FP32")
        state_in.set_data_from_numpy(np.zeros((1, 10), np.float32))
        out = client.infer(model_name, [signal_in, state_in]).as_numpy("logprobs")
    finally:
        client.close()
    assert out is not None
    return int(out.shape[1])


def _server_pids() -> set[int]:
    return {p for p in our_processes()
            if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(
                b"/tritonserver")}


def test_kept_server_swaps_each_jobs_models_into_one_process(tmp_path: Path):
    """keep_running: one tritonserver for every block; each block serves its own model
    (the output shapes differ), its log holds its own lines only, and close_kept() leaves
    nothing behind."""
    frames = (20, 10, 40)
    pids, logs = set(), []
    try:
        for k, n in enumerate(frames):
            server = LocalServer(keep_running=True)  # a new object per job, as job.py does
            repository = _tiny_repository(tmp_path, f"repo{k}", n, server)
            log = tmp_path / f"job{k}" / "tritonserver.log"
            with server.serving(repository, log) as endpoint:
                assert _frames_served(endpoint.grpc_url, endpoint.model_name) == n
                pids |= _server_pids()
            logs.append(log.read_text())
        assert len(pids) == 1, pids
        assert our_processes(), "the kept server outlives the blocks"
        for k, text in enumerate(logs):
            assert text.count("successfully loaded 'model'") == 1, (k, text)
            assert f"repo{k}" not in text and "Started GRPCInferenceService" not in text
    finally:
        close_kept()
    assert our_processes() == []


def test_kept_server_is_replaced_after_a_failed_block(tmp_path: Path):
    """A block that fails (here: a broken model, then an error inside the block) stops the
    kept server; the next block gets a fresh one that serves."""
    server = LocalServer(keep_running=True)
    good = _tiny_repository(tmp_path, "good", 20, server)
    broken = _tiny_repository(tmp_path, "broken", 20, server)
    (broken.path / "model" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    try:
        with server.serving(good, tmp_path / "a.log"):
            first = _server_pids()
        with pytest.raises(ServerError, match="loading model 'model' into the kept "
                                              "tritonserver failed"), \
                server.serving(broken, tmp_path / "b.log"):
            pass
        assert "Protobuf parsing failed" in (tmp_path / "b.log").read_text()
        assert not _server_pids() & first, "the server that failed a load was stopped"
        with pytest.raises(RuntimeError, match="evaluation failed"), \
                server.serving(good, tmp_path / "c.log"):
            second = _server_pids()
            raise RuntimeError("evaluation failed")
        assert not _server_pids() & second
        with server.serving(good, tmp_path / "d.log") as endpoint:
            assert _frames_served(endpoint.grpc_url, endpoint.model_name) == 20
            assert _server_pids() and not _server_pids() & (first | second)
    finally:
        close_kept()
    assert our_processes() == []


def _gather_onnx(path: Path, chunk: int = 3200, frames: int = 20, state: int = 10) -> Path:
    """The tiny model plus a lookup whose index is the chunk's largest sample: a chunk
    whose samples stay under 4 is served, a larger one makes ONNX Runtime's Gather fail
    ('indices element out of data bounds'), as an out-of-range index of a real model does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(tiny_monolithic_onnx(path, chunk=chunk, frames=frames, state=state)))
    graph = model.graph
    for node in graph.node:  # the state's sum goes through the lookup below
        node.output[:] = ["state_sum" if o == "state_next" else o for o in node.output]
    graph.initializer.extend([numpy_helper.from_array(np.zeros(4, np.float32), "table"),
                              numpy_helper.from_array(np.array([1], np.int64), "axis_1")])
    graph.node.extend([
        helper.make_node("ReduceMax", ["signal"], ["peak"], axes=[1, 2], keepdims=0),
        helper.make_node("Cast", ["peak"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["looked_up"], axis=0),
        helper.make_node("Unsqueeze", ["looked_up", "axis_1"], ["looked_up2"]),
        helper.make_node("Add", ["state_sum", "looked_up2"], ["state_next"]),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _infer_async(client: grpcclient.InferenceServerClient, model_name: str, peak: int,
                 done: list[tuple[int, Any]], k: int, state: str) -> None:
    signal_in = grpcclient.InferInput("signal", [1, 3200, 1], "INT32")
    signal_in.set_data_from_numpy(np.full((1, 3200, 1), peak, np.int32))
    inputs = [signal_in]
    sequence: dict[str, Any] = {}
    if state == "client":
        state_in = grpcclient.InferInput("state", [1, 10], "FP32")
        state_in.set_data_from_numpy(np.zeros((1, 10), np.float32))
        inputs.append(state_in)
    else:  # the server keeps the state: each request is a one-chunk sequence of its own
        sequence = {"sequence_id": k + 1, "sequence_start": True, "sequence_end": True}
    client.async_infer(model_name, inputs,
                       lambda result, error: done.append((k, error if error else result)),
                       **sequence)


@pytest.mark.parametrize("state", ["client", "server"])
def test_a_request_that_fails_in_a_batch_fails_alone(tmp_path: Path, state: str):
    """One request whose input makes the model fail, batched with good ones (the default
    scheduling; with server.state=server the sequence batcher's): it gets its own error,
    the others of its batch their results, and the server lives on. Handing one error
    object to every response of a batch made tritonserver die with SIGSEGV."""
    onnx_path = _gather_onnx(tmp_path / "gather.onnx")
    model = ModelInterface(name="gather", onnx_path=onnx_path, contract=Contract.MONOLITHIC,
                           audio_input="signal", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    engine = Engine(path=onnx_path, format=EngineFormat.ONNX_EMULATED, flags=FlagSet(),
                    builder="none", builder_version="0", build_seconds=0.0,
                    log_path=onnx_path)
    server = LocalServer()
    repository = render(model, engine, tmp_path / "repo", site_packages=server.site_packages(),
                        options=ServingOptions(state=state))
    log = tmp_path / "server.log"
    rounds, per_round, bad = 6, 12, 5
    with server.serving(repository, log) as endpoint:
        client = grpcclient.InferenceServerClient(endpoint.grpc_url)
        try:
            for _ in range(rounds):
                done: list[tuple[int, Any]] = []
                for k in range(per_round):
                    _infer_async(client, endpoint.model_name, 100 if k == bad else 1, done, k,
                                 state)
                deadline = time.monotonic() + 30
                while len(done) < per_round and time.monotonic() < deadline:
                    time.sleep(0.01)
                answers = dict(done)
                assert sorted(answers) == list(range(per_round)), \
                    (sorted(answers), log.read_text()[-2000:])
                failed = {k for k, a in answers.items()
                          if isinstance(a, InferenceServerException)}
                assert failed == {bad}, {k: str(answers[k]) for k in failed}
                assert "out of data bounds" in str(answers[bad]), answers[bad]
                for k, answer in answers.items():
                    if k != bad:
                        assert answer.as_numpy("logprobs").shape == (1, 20, 35)
            stats = client.get_inference_statistics(endpoint.model_name, as_json=True)
            (model_stats,) = stats["model_stats"]
            executions = int(model_stats["execution_count"])
            inferences = int(model_stats["inference_count"])
            # Good requests only are counted; batches formed (fewer runs than requests),
            # so the failing request did share a batch with good ones.
            assert executions < inferences, (executions, inferences)
            assert client.is_server_live() and client.is_model_ready(endpoint.model_name)
            if state == "client":
                assert _frames_served(endpoint.grpc_url, endpoint.model_name) == 20
        finally:
            client.close()
    assert our_processes() == []
