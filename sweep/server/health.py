"""Waiting for Triton: ready means the server answers and the entry model is READY."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import tritonclient.grpc as grpcclient

from sweep.errors import ServerError
from sweep.infra.files import tail


def triton_error_lines(log_path: Path, limit: int = 6, width: int = 400) -> list[str]:
    """Triton's own error lines (glog ``E`` lines, the final ``error:``), first line of each
    message only. A failed model load prints a long status table and shutdown chatter after
    the cause, so the log's last lines alone often miss it."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        text = line.strip()
        if not ((text[:1] == "E" and text[1:5].isdigit()) or "UNAVAILABLE:" in text
                or text.startswith("error:")):
            continue
        if "CudaDriverHelper" in text:  # every CPU-only start says this; harmless
            continue
        # Triton escapes a message's newlines: what follows the first (a python backend
        # traceback) would only bury the cause.
        text = text.split("\\n", 1)[0]
        text = text if len(text) <= width else text[:width] + " ..."
        if text not in found:
            found.append(text)
    return found[-limit:]


def quoted_errors(log_path: Path) -> str:
    """Triton's own error lines from ``log_path``, as a message's lead-in ("" if none)."""
    found = triton_error_lines(log_path)
    return "Triton says:\n" + "\n".join(found) + "\n" if found else ""


def wait_ready(grpc_url: str, model_name: str | None, *, timeout_s: float, log_path: Path,
               alive: Callable[[], bool], what: str = "tritonserver",
               quote_errors: bool = False) -> float:
    """Poll until ``model_name`` is ready (None: the server itself, no model loaded yet, as
    an explicit-mode server starts); return the seconds it took.

    ``alive`` tells whether the process/container still runs, so a crash during start-up
    fails at once with the log's last lines instead of after the whole timeout.
    ``quote_errors`` puts Triton's own error lines first in the message.
    """
    start = time.perf_counter()
    client = grpcclient.InferenceServerClient(grpc_url)

    def errors() -> str:
        return quoted_errors(log_path) if quote_errors else ""

    def ready() -> bool:
        if not client.is_server_live(client_timeout=1.0):
            return False
        if model_name is None:
            return bool(client.is_server_ready(client_timeout=1.0))
        return bool(client.is_model_ready(model_name, client_timeout=1.0))

    with_model = f" with model {model_name!r}" if model_name is not None else ""
    try:
        while True:
            if not alive():
                raise ServerError(
                    f"{what} exited before becoming ready. {errors()}Last lines of "
                    f"{log_path}:\n{tail(log_path)}", log_path)
            try:
                if ready():
                    return time.perf_counter() - start
            except Exception:  # not listening yet: any transport error means "not ready"
                pass
            if time.perf_counter() - start > timeout_s:
                raise ServerError(
                    f"{what} did not become ready{with_model} within "
                    f"{timeout_s:.0f} s (raise server.ready_timeout_s if start-up is slow). "
                    f"{errors()}Last lines of {log_path}:\n{tail(log_path)}", log_path)
            time.sleep(0.1)
    finally:
        client.close()
