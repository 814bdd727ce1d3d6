"""The MLflow tracking store: opened once per process, checked before any work.

The tracking URI can carry credentials, so it is never written to a log or an artifact.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import TrackingError


@dataclass(frozen=True)
class Store:
    uri: str
    experiment_id: str
    experiment: str


def _absolute_uri(uri: str, base: Path) -> str:
    # A relative sqlite path would follow the process's cwd; pin it to where the user ran.
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = (base / uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


# user:password@ in any URI-looking text: what ``redact`` hides.
# Hydra writes overrides with escaped colons (http\://user\:pw@...): the "\\?" takes those.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*\\?://)[^/@\s]+@")
# The store check's bounds: MLflow's defaults (7 retries with backoff, 120 s per request)
# let a sweep against a tracking server that is down sit silent for about four minutes
# before it fails. Mid-sweep calls keep MLflow's defaults, which ride out a short outage.
_CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_CONNECT_TIMEOUT_S = 5.0


def redact(text: str) -> str:
    """``text`` with the credentials of every ``scheme://user:password@host`` removed."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def _check_reachable(uri: str) -> None:
    """An http(s) store must accept a TCP connection within seconds. Only host and port go
    into the message: the URI may carry credentials."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TrackingError(
            f"the MLflow tracking server at {parts.hostname}:{port} (tracking.uri) does not "
            f"answer ({reason}). Start it (mlflow server ...), check the address, or use the "
            "default sqlite:///mlruns/mlflow.db.") from None


@contextmanager
def _bounded_http_retries() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _CHECK_ENV}
    for key, value in _CHECK_ENV.items():
        os.environ.setdefault(key, value)  # a user's own setting wins
    try:
        yield
    finally:
        for key, before in saved.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


@contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """One process at a time creates a fresh SQLite store: MLflow's SqlAlchemyStore runs
    its schema creation and migrations unguarded, and two sweeps starting together on a new
    store fail with 'table ... already exists' / 'duplicate column name'."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    db = Path(uri[len(prefix):].split("?", 1)[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(uri: str, experiment: str, artifact_root: str | None, base: Path,
               wait_s: float = 0.0) -> Store:
    """Connect, create the experiment if needed, and fail early if the store is unusable.
    ``wait_s``: how long a tracking server that does not answer is waited for (a job in
    the middle of a sweep rides out a server restart; the sweep's own check does not)."""
    uri = _absolute_uri(uri, base)
    if artifact_root is None and not _is_server(uri):
        raise TrackingError("tracking.artifact_root=null lets a tracking server store the "
                            "artifacts, but tracking.uri is not an http(s) server: set "
                            "tracking.artifact_root to a folder.")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            _check_reachable(uri)
            break
        except TrackingError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
    if redact(uri) != uri:
        # MLflow prints "View run ... at: <tracking URI>/#/..." to stdout when a run ends,
        # credentials and all.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with _bounded_http_retries(), _init_lock(uri):
        return _open_store(uri, experiment, artifact_root, base)


def _is_server(uri: str) -> bool:
    return urllib.parse.urlsplit(uri).scheme in ("http", "https")


def _open_store(uri: str, experiment: str, artifact_root: str | None, base: Path) -> Store:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if artifact_root is not None:
                root = Path(artifact_root)
                root = root if root.is_absolute() else (base / root)
                root.mkdir(parents=True, exist_ok=True)
                location = root.resolve().as_uri()
            try:
                experiment_id = client.create_experiment(experiment, artifact_location=location)
            except Exception:  # another sweep created it between the two calls
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        _set_kind(client, experiment_id, found)
    except Exception as exc:
        raise TrackingError(
            f"the MLflow tracking store (tracking.uri) cannot be used: "
            f"{type(exc).__name__}. Check that it is reachable and writable, or use the "
            "default sqlite:///mlruns/mlflow.db."
        ) from exc
    return Store(uri=uri, experiment_id=experiment_id, experiment=experiment)


def _set_kind(client: object, experiment_id: str, found: object) -> None:
    """Tag the experiment as model development, the way MLflow 3 records an experiment's
    kind, so its UI opens it on the runs table rather than the GenAI overview. A kind
    someone set already is kept."""
    from sweep.tracking import tags as tag

    existing = dict(getattr(found, "tags", None) or {}) if found is not None else {}
    if tag.EXPERIMENT_KIND not in existing:
        client.set_experiment_tag(experiment_id, tag.EXPERIMENT_KIND,  # type: ignore[attr-defined]
                                  tag.EXPERIMENT_KIND_VALUE)
