"""One tritonserver kept across a sweep's jobs: ``--model-control-mode=explicit`` on a swap
folder, each job's models swapped in over gRPC. Shared by the kept local process and the
kept Docker container.

A swap hard-links the job's rendered repository into the swap folder and *reloads* its
models: Triton loads the new version next to the old one and switches when it is ready, so
a job never waits for the previous job's python-backend stubs to shut down (about 1 s with
two instances; bench/RESULTS.md, section overhead). Models of the previous job that the new
one does not have are unloaded without waiting. Every call has a deadline: a server that
stopped answering fails the job instead of hanging the sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import tritonclient.grpc as grpcclient

from sweep.errors import ServerError
from sweep.infra.files import tail
from sweep.server.base import ModelRepository
from sweep.server.health import quoted_errors, wait_ready


class KeptServer:
    """One kept server's state, shared by the local process and the container: its lock
    serialises the jobs that use it; ``root`` is the folder it serves from (removed on
    close). Subclasses say how the server itself stops (``stop``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grpc_url: str | None = None
        self.http_url: str | None = None
        self.root: Path | None = None

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and remove what it served; the next job starts a fresh one."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.grpc_url = self.http_url = None


K = TypeVar("K", bound=KeptServer)


class KeptServers(Generic[K]):
    """The servers this process keeps, one per settings key. A launcher makes a new server
    object per job, so the kept server lives here, not in that object; every one is closed
    at ``close_all()`` and at interpreter exit (nothing outlives the sweep)."""

    def __init__(self, make: Callable[[], K]) -> None:
        self._make = make
        self._kept: dict[tuple[str, ...], K] = {}
        self._guard = threading.Lock()
        atexit.register(self.close_all)

    def get(self, key: tuple[str, ...]) -> K:
        with self._guard:
            if key not in self._kept:
                self._kept[key] = self._make()
            return self._kept[key]

    def close(self, key: tuple[str, ...]) -> None:
        with self._guard:
            kept = self._kept.pop(key, None)
        if kept is not None:
            with kept.lock:
                kept.close()

    def close_all(self) -> None:
        while True:
            with self._guard:
                if not self._kept:
                    return
                _, kept = self._kept.popitem()
            with kept.lock:
                kept.close()


def swap_in(grpc_url: str, repository: ModelRepository, swap_root: Path, *, timeout_s: float,
            log_path: Path, alive: Callable[[], bool], what: str,
            flush_log: Callable[[], None] | None = None) -> float:
    """Serve ``repository`` from a running explicit-mode server whose model repository is
    ``swap_root``; return the seconds until its entry model was READY. ``log_path``: the
    job's view of the server's log, quoted when something fails (``flush_log`` brings it
    up to date first)."""
    begin = time.perf_counter()
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        try:
            index = client.get_model_repository_index(as_json=True, client_timeout=timeout_s)
        except Exception as exc:
            raise ServerError(f"listing the models of the kept {what} failed: {exc}",
                              log_path) from exc
        previous = {m["name"] for m in index.get("models", []) if m.get("state") == "READY"}
        replace_tree(repository.path, swap_root)
        for model in repository.models:
            try:
                client.load_model(model, client_timeout=timeout_s)
            except Exception as exc:  # tritonclient's InferenceServerException
                if flush_log is not None:
                    flush_log()
                # Its first line has the reason; the rest is a python-backend traceback.
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise ServerError(
                    f"loading model {model!r} into the kept {what} failed: {reason}\n"
                    f"{quoted_errors(log_path)}Last lines of {log_path}:\n{tail(log_path)}",
                    log_path) from exc
        for stale in sorted(previous - set(repository.models)):
            # Unloaded in the background: nothing of this job waits for its stubs to end.
            with contextlib.suppress(Exception):
                client.unload_model(stale, client_timeout=timeout_s)
    finally:
        client.close()
    wait_ready(grpc_url, repository.entry_model, timeout_s=timeout_s, log_path=log_path,
               alive=alive, what=what, quote_errors=True)
    return time.perf_counter() - begin


def replace_tree(src: Path, dst: Path) -> None:
    """Make ``dst`` hold exactly ``src``'s models; hard links where possible (engines are
    big, and the repository itself hard-links them from the engine cache). A loaded model
    keeps what it read at load time, so its files may go from under it."""
    for child in dst.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

    def link_or_copy(a: str, b: str) -> str:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
        return b

    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir():
            shutil.copytree(child, target, copy_function=link_or_copy)
        else:
            link_or_copy(str(child), str(target))
