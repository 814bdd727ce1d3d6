"""The fault matrix's fixtures: sweeps as a user runs them (``python -m sweep`` in a child
process, a real tritonserver, a real MLflow store, a real dockerd where a row needs one),
and one clean-up check every row ends with.

Each test is one row of the matrix: ``@pytest.mark.fault(name, expected)`` names the fault
and what must happen; the test records what it saw with the ``row`` fixture (``outcome``,
``cleanup``). ``python -m tests.faults.matrix`` runs the suite and prints the rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sweep.tracking import tags as tag
from tests.support.paths import DEMO_ONNX, ROOT
from tests.support.processes import default_sigint, our_processes
from tests.support.sweep import sweep_command

__all__ = ["Row", "SweepProcess", "assert_clean", "run_sweep", "start_sweep", "warm_engine"]

CACHE_META = "engine.json"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault(name, expected): one row of the fault matrix (tests/faults)")


# -- one row of the matrix -------------------------------------------------------------------

class Row:
    """What a test saw, kept in the report's user_properties (the matrix and junitxml read
    them from there)."""

    def __init__(self, record: Callable[[str, object], None]) -> None:
        self._record = record

    def outcome(self, text: str) -> None:
        self._record("outcome", text)

    def cleanup(self, text: str) -> None:
        self._record("cleanup", text)


@pytest.fixture
def row(record_property: Callable[[str, object], None]) -> Row:
    return Row(record_property)


# -- sweeps ----------------------------------------------------------------------------------

@dataclass
class SweepProcess:
    """A ``python -m sweep`` child process against a store and cache of its own."""

    tmp: Path
    db: Path
    cache: Path
    proc: subprocess.Popen[str]
    started: float
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db}"

    def wait(self, timeout: float = 300) -> SweepProcess:
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.stdout, self.stderr = self.proc.communicate()
            pytest.fail(f"the sweep hung: still running after {timeout:.0f} s\n"
                        f"{self.stderr[-3000:]}")
        self.seconds = time.perf_counter() - self.started
        return self

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def runs(self) -> list[Any]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name("trt-sweep")
        return [] if experiment is None else client.search_runs([experiment.experiment_id])

    def jobs(self) -> list[Any]:
        return sorted((r for r in self.runs() if r.data.tags.get(tag.KIND) == "job"),
                      key=lambda r: int(r.data.params.get("job.num", 0)))

    def parents(self) -> list[Any]:
        return [r for r in self.runs() if r.data.tags.get(tag.KIND) == "sweep"]

    def artifacts(self, run: Any) -> dict[str, Path]:
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def start_sweep(args: list[str], tmp: Path, *, cache: Path | None = None,
                db: Path | None = None, tracking: bool = True,
                env: dict[str, str] | None = None, name: str = "sweep",
                ignore_sigint: bool = False) -> SweepProcess:
    """Start ``python -m sweep ARGS`` in its own session (so a test can signal it as a
    terminal does), with the store and the sweep folder under ``tmp``. ``ignore_sigint``:
    started as a script's background job is (SIGINT ignored, inherited)."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "mlruns" / "mlflow.db"
    cache = cache or tmp / "cache"
    cmd = sweep_command(args, tmp, db=db, cache=cache, tracking=tracking,
                        sweep_dir=tmp / name, run_dir=tmp / name)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})},
                            start_new_session=True,
                            preexec_fn=_ignore_sigint if ignore_sigint else default_sigint)
    sweep = SweepProcess(tmp, db, cache, proc, time.perf_counter())
    _STARTED.append(sweep)
    return sweep


_STARTED: list[SweepProcess] = []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_sweep(args: list[str], tmp: Path, timeout: float = 300, **kwargs: Any
              ) -> SweepProcess:
    return start_sweep(args, tmp, **kwargs).wait(timeout)


# -- the servers a running sweep started -----------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


@dataclass(frozen=True)
class TritonProcess:
    pid: int
    grpc_port: int


def triton_of(sweep: SweepProcess) -> TritonProcess | None:
    """The tritonserver the sweep runs now (its direct child), if any."""
    for pid in our_processes():
        cmd = _cmdline(pid)
        if cmd and cmd[0].endswith("/tritonserver") and _ppid(pid) == sweep.pid:
            port = next(int(a.split("=", 1)[1]) for a in cmd if a.startswith("--grpc-port="))
            return TritonProcess(pid, port)
    return None


def served_requests(grpc_url: str, model: str = "model") -> int:
    """Successful inferences so far (0 while not ready)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        stats = client.get_inference_statistics(model_name=model, as_json=True,
                                                client_timeout=1.0)
        return sum(int(m.get("inference_stats", {}).get("success", {}).get("count", 0))
                   for m in stats.get("model_stats", []))
    except Exception:
        return 0
    finally:
        client.close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               sweep: SweepProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if sweep is not None and sweep.proc.poll() is not None:
            sweep.wait()
            pytest.fail(f"the sweep ended before {what}:\n{sweep.stderr[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def mid_evaluation(sweep: SweepProcess, *, not_pid: set[int] | None = None,
                   timeout: float = 120) -> TritonProcess:
    """Wait until the sweep's (next) tritonserver has answered a first chunk, so a fault
    lands in the middle of an evaluation, not in start-up."""
    skip = not_pid or set()

    def server() -> TritonProcess | None:
        found = triton_of(sweep)
        return found if found is not None and found.pid not in skip else None

    triton = wait_until(server, timeout, "a tritonserver to start", sweep)
    wait_until(lambda: served_requests(f"127.0.0.1:{triton.grpc_port}") > 0, timeout,
               "the evaluation to start", sweep)
    return triton


# -- engines ---------------------------------------------------------------------------------

def warm_engine(cache: Path, **trt: Any) -> Path:
    """Build the demo engine for the flag set ``trt`` (on TrtConfig's defaults) into
    ``cache`` exactly as a job does, so faults that are not about building skip the build."""
    from sweep.builder import make_builder
    from sweep.builder.cache import EngineCache
    from sweep.config import TrtConfig
    from sweep.flags import FlagSet

    flags = FlagSet.from_mapping({**asdict(TrtConfig()), **trt})
    engine = EngineCache(cache).build(make_builder("emulate", intra_op_num_threads=1),
                                      DEMO_ONNX, flags, "cpu")
    return engine.path.parent


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the default (fp32) demo engine, shared by the rows (some add their fp16
    entry to it); a row that damages an entry works on a copy."""
    cache = tmp_path_factory.mktemp("warm-cache")
    warm_engine(cache)
    return cache


# -- the clean-up every row ends with --------------------------------------------------------

def _containers_of(pids: list[int]) -> list[str] | None:
    """Names of containers started by these sweep processes (label trt-sweep.host-pid);
    None when no Docker daemon answers (nothing can be left there then)."""
    from sweep.infra import containers

    try:
        client = containers.connect(timeout_s=10)
    except Exception:
        return None
    names = []
    for pid in pids:
        for c in client.containers.list(all=True,
                                        filters={"label": f"trt-sweep.host-pid={pid}"}):
            names.append(c.name)
    return names


def partial_cache_entries(cache: Path) -> list[str]:
    """Entries a crash or a full disk could leave: temporary build folders, half-evicted
    entries, entry folders without their metadata."""
    if not cache.is_dir():
        return []
    bad = []
    for path in cache.iterdir():
        if path.name == ".failed":
            continue
        if path.name.startswith(".") or not (path / CACHE_META).is_file():
            bad.append(path.name)
    return bad


def assert_clean(*sweeps: SweepProcess, caches: tuple[Path, ...] = ()) -> str:
    """After a fault: no tritonserver (or backend stub) of this test session, no container
    of these sweeps, no MLflow run left RUNNING, no partial engine-cache entry. Returns the
    clean-up as one line for the matrix."""
    # A SIGKILLed server's orphaned python-backend stubs are reaped by init a moment later.
    deadline = time.monotonic() + 5
    while our_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = our_processes()
    assert left == [], f"processes left behind: {[' '.join(_cmdline(p))[:120] for p in left]}"
    containers = _containers_of([s.pid for s in sweeps])
    assert not containers, f"containers left behind: {containers}"
    running = []
    for sweep in sweeps:
        if sweep.db.exists():
            running += [r.info.run_id for r in sweep.runs() if r.info.status == "RUNNING"]
    assert running == [], f"runs left RUNNING: {running}"
    partial = []
    for cache in {*(s.cache for s in sweeps), *caches}:
        partial += partial_cache_entries(cache)
    assert partial == [], f"partial engine-cache entries: {partial}"
    docker_note = "no container" if containers is not None else "no dockerd to hold one"
    return f"no tritonserver, {docker_note}, no RUNNING run, no partial cache entry"


@pytest.fixture(autouse=True)
def _no_leftovers_for_the_next_row() -> Iterator[None]:
    """A row that fails half-way must not leave its sweep or servers to the next row."""
    yield
    pids = []
    while _STARTED:
        sweep = _STARTED.pop()
        pids.append(sweep.pid)
        if sweep.proc.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.proc.communicate()
    for pid in our_processes():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    # A sweep killed by a failing row cannot remove its container itself.
    if _containers_of(pids):
        from sweep.infra import containers

        for pid in pids:
            containers.cleanup(f"trt-sweep.host-pid={pid}")
