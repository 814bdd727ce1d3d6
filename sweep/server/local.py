"""Triton as a local child process: the tritonserver binary that nvidia-pytriton ships.

This is the embedded default: no Docker, no GPU. The wheel carries a real tritonserver
(2.51) with the python backend and one backend stub per Python version; the stub embeds the
system libpython of that version, so the stub is chosen for the running interpreter and the
backend folder is assembled once in a cache directory.

Two modes, one interface (``serving`` is a context manager, as for the Docker server):

* fresh (``keep_running=False``): every ``serving`` block starts a tritonserver on the
  rendered repository and stops it when the block exits, whatever happens inside.
* ``keep_running=True`` (what a multirun uses, see sweep/__main__.py): one tritonserver in
  explicit model-control mode, shared by every LocalServer of the same settings in this
  process; each block swaps its models in (sweep/server/explicit.py), and what the server
  logs meanwhile is copied into the block's log file. A block that fails in any way stops
  the kept server, so the next job starts on a fresh one. The server goes at
  ``close_kept()`` or interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sweep.errors import ServerError
from sweep.infra.files import LABEL
from sweep.infra.ports import pick_ports
from sweep.infra.processes import exit_reason, exited, stop_process, watch
from sweep.server.args import tritonserver_args
from sweep.server.base import Endpoint, ModelRepository
from sweep.server.health import wait_ready
from sweep.server.kept import KeptServer, KeptServers, swap_in

_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServerError(
            "server=local needs the nvidia-pytriton wheel, which ships the tritonserver "
            "binary: pip install nvidia-pytriton==0.7.0 (or use server=docker)."
        ) from exc
    return Path(pytriton.__file__).resolve().parent


def _libpython_present() -> bool:
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "/usr/lib")
    candidates = [libdir, Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
                  Path("/usr/lib"), Path("/usr/local/lib")]
    name = f"libpython{_PY}.so.1.0"
    return any((d / name).exists() for d in candidates)


def backend_directory(cache_dir: Path) -> Path:
    """A backends/ folder holding the python backend with this interpreter's stub."""
    root = _pytriton_root() / "tritonserver"
    stub = root / "python_backend_stubs" / _PY / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(
            f"nvidia-pytriton has no python backend stub for Python {_PY} (looked for {stub}); "
            "use Python 3.10-3.12 or server=docker."
        )
    if not _libpython_present():
        raise ServerError(
            f"The python backend stub needs the shared library libpython{_PY}.so.1.0 of the "
            f"system (it ignores virtualenvs). Install it, e.g. apt-get install "
            f"libpython{_PY}, or use server=docker."
        )
    target = cache_dir / f"backends-py{_PY}"
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").exists():
        tmp = cache_dir / f".backends-py{_PY}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "python").mkdir(parents=True)
        for item in (root / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / "python" / item.name)
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class LocalServer:
    """``server=local``: tritonserver as a child process on free loopback ports."""

    name = "local"

    def __init__(self, ready_timeout_s: float = 60.0, grpc_port: int | None = None,
                 http_port: int | None = None, cache_dir: str | None = None,
                 log_verbose: int = 0, keep_running: bool = False) -> None:
        self.ready_timeout_s = ready_timeout_s
        self.keep_running = keep_running
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "trt-sweep")
        self.log_verbose = log_verbose

    def site_packages(self) -> str:
        paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        return ":".join(sorted(paths))

    def command(self, repository: Path, grpc_port: int, http_port: int,
                explicit: bool = False) -> list[str]:
        binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        # Loopback only: a sweep's server is for the sweep, not for the network.
        return tritonserver_args(binary=str(binary), repository=str(repository),
                                 backend_directory=str(backend_directory(self.cache_dir)),
                                 address="127.0.0.1", grpc_port=grpc_port,
                                 http_port=http_port, explicit=explicit,
                                 log_verbose=self.log_verbose)

    def _popen(self, repository: Path, log_path: Path, explicit: bool = False
               ) -> tuple[subprocess.Popen[bytes], int, int]:
        grpc_port, http_port = pick_ports("127.0.0.1", self.grpc_port, self.http_port)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        libs = _pytriton_root().parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
        env[LABEL.upper().replace("-", "_")] = "1"  # lets a clean-up find our processes
        # The python backend stub embeds libpython, which ignores PYTHONPATH and finds its
        # prefix by looking up "python3" on PATH; the stub imports numpy before any
        # model.py runs. Our interpreter's folder first on PATH makes the stub start in
        # this environment (venv or not) instead of the system Python, which has no numpy.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = self.command(repository, grpc_port, http_port, explicit=explicit)
        with open(log_path, "ab") as log:
            # A new session: Ctrl-C in the terminal reaches the sweep, which then stops the
            # server in order, instead of killing Triton under an evaluation in flight.
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        watch(proc, env)
        return proc, grpc_port, http_port

    @contextmanager
    def serving(self, repository: ModelRepository, log_path: Path) -> Iterator[Endpoint]:
        if self.keep_running:
            with self._serving_kept(repository, log_path) as endpoint:
                yield endpoint
            return
        log_path.unlink(missing_ok=True)
        proc, grpc_port, http_port = self._popen(repository.path, log_path)
        regions: list[Path] = []
        try:
            started = wait_ready(f"127.0.0.1:{grpc_port}", repository.entry_model,
                                 timeout_s=self.ready_timeout_s, log_path=log_path,
                                 alive=lambda: proc.poll() is None, quote_errors=True)
            # Known now, while the stubs live: a server that is killed later cannot remove
            # its stubs' shared memory, so the stop does.
            regions = _stub_shm_regions(proc.pid)
            with _saying_how_it_died(proc, log_path):
                yield Endpoint(grpc_url=f"127.0.0.1:{grpc_port}",
                               http_url=f"127.0.0.1:{http_port}",
                               model_name=repository.entry_model, log_path=log_path,
                               startup_seconds=started, server=self.name)
        finally:
            stop_process(proc, regions=regions or _stub_shm_regions(proc.pid))

    # -- one kept server, models swapped -----------------------------------------------
    def _kept_key(self) -> tuple[str, ...]:
        return (str(self.cache_dir), str(self.grpc_port), str(self.http_port),
                str(self.log_verbose))

    def _ensure_kept(self, kept: _Kept, log_path: Path) -> None:
        if kept.proc is not None and kept.proc.poll() is None:
            return
        kept.close()
        kept.root = Path(tempfile.mkdtemp(prefix=f"{LABEL}-triton-"))
        (kept.root / "models").mkdir()
        server_log = kept.root / "tritonserver.log"
        kept.proc, grpc_port, http_port = self._popen(kept.root / "models", server_log,
                                                      explicit=True)
        kept.grpc_url, kept.http_url = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}"
        proc = kept.proc
        try:
            wait_ready(kept.grpc_url, None, timeout_s=self.ready_timeout_s,
                       log_path=server_log, alive=lambda: proc.poll() is None,
                       quote_errors=True)
        except BaseException:
            # The job's log gets what the server said before it failed to come up.
            with contextlib.suppress(OSError):
                shutil.copyfile(server_log, log_path)
            kept.close()
            raise

    @contextmanager
    def _serving_kept(self, repository: ModelRepository, log_path: Path
                      ) -> Iterator[Endpoint]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        kept = _KEPT.get(self._kept_key())
        with kept.lock:
            begin = time.perf_counter()
            healthy = False
            tee: _LogTee | None = None
            try:
                self._ensure_kept(kept, log_path)
                proc, grpc_url = kept.proc, kept.grpc_url
                assert proc is not None and grpc_url is not None and kept.root is not None
                tee = _LogTee(kept.root / "tritonserver.log", log_path)
                swap_in(grpc_url, repository, kept.root / "models",
                        timeout_s=self.ready_timeout_s, log_path=log_path,
                        alive=lambda: proc.poll() is None, what="tritonserver",
                        flush_log=tee.flush)
                kept.regions.update(_stub_shm_regions(proc.pid))
                with _saying_how_it_died(proc, log_path):
                    yield Endpoint(grpc_url=grpc_url, http_url=kept.http_url or "",
                                   model_name=repository.entry_model, log_path=log_path,
                                   startup_seconds=time.perf_counter() - begin,
                                   server=self.name)
                healthy = True
            finally:
                if not healthy:
                    # Whatever went wrong (a model that does not load, a frozen or dead
                    # server, Ctrl-C), the next job must not inherit it.
                    kept.close()
                if tee is not None:
                    tee.close()


class _LogTee:
    """Copies what a kept server writes to its log into one job's log while the job runs:
    the server's log file cannot be switched over the network (Triton refuses), and each
    job's run keeps the lines of its own models only."""

    def __init__(self, source: Path, dest: Path, interval_s: float = 0.05) -> None:
        self._src = open(source, "rb")  # noqa: SIM115 (closed in close())
        self._src.seek(0, os.SEEK_END)
        self._dest = dest
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="triton-log-tee", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Copy what the server wrote so far (before the job's log is read)."""
        with self._lock:
            if self._src.closed:
                return
            data = self._src.read()
            if data:
                with open(self._dest, "ab") as out:
                    out.write(data)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()
        with self._lock:
            self._src.close()


class _Kept(KeptServer):
    """The one tritonserver a configuration keeps, shared by every LocalServer built with
    the same settings in this process (job.py makes a server per job)."""

    def __init__(self) -> None:
        super().__init__()
        self.proc: subprocess.Popen[bytes] | None = None
        self.regions: set[Path] = set()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, regions=sorted(self.regions | set(_stub_shm_regions(proc.pid))))
        self.regions.clear()


_KEPT: KeptServers[_Kept] = KeptServers(_Kept)


def close_kept() -> None:
    """Stop every kept tritonserver of this process (nothing outlives the sweep)."""
    _KEPT.close_all()


@contextmanager
def _saying_how_it_died(proc: subprocess.Popen[bytes], log_path: Path) -> Iterator[None]:
    """Around an evaluation: if the server died, the error says so, and how."""
    try:
        yield
    except Exception as exc:
        # A client error because the server died says "connection refused"; the run's
        # reason should say that Triton died, and how.
        if exited(proc):
            raise ServerError(f"tritonserver {exit_reason(proc.returncode)} during the "
                              f"evaluation ({exc}); see {log_path}", log_path) from exc
        raise
    if proc.poll() is not None:
        raise ServerError(f"tritonserver {exit_reason(proc.returncode)} during the "
                          f"evaluation; see {log_path}", log_path)


def _stub_shm_regions(pgid: int) -> list[Path]:
    """The /dev/shm regions of the python-backend stubs in a server's process group (each
    stub gets its region's name on its command line and removes it when it unloads)."""
    regions = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        regions += [Path("/dev/shm") / a.decode(errors="replace") for a in args
                    if a.startswith(b"triton_python_backend_shm_region")]
    return regions


