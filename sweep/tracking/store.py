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


# scheme://user:password@ in any URI-looking text: what ``redact`` hides. The user part runs
# to the LAST "@" of the word (a password may hold raw "@", ":", "/", quotes or brackets),
# which ends at whitespace, a double quote (JSON) or an angle bracket: hiding a little too
# much beats showing a piece of a password. Hydra writes overrides with escaped colons
# (http\://user\:pw@...): the "\\?" takes those.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*\\?://)[^\s\"<>]*@")
# Where a tracking URI reaches a process without passing through ``open_store``.
_URI_ENV = ("MLFLOW_TRACKING_URI", "TRT_SWEEP_TRACKING_URI")
# Shorter secrets are not searched for as plain text: they would blank out ordinary words.
_MIN_SECRET = 4
_SECRETS: set[str] = set()
# The store check's bounds: MLflow's defaults (7 retries with backoff, 120 s per request)
# let a sweep against a tracking server that is down sit silent for about four minutes
# before it fails. Mid-sweep calls keep MLflow's defaults, which ride out a short outage.
_CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_CONNECT_TIMEOUT_S = 5.0


def _userinfo(uri: str) -> tuple[str, str] | None:
    """(user info, the rest) of ``scheme://userinfo@rest``, the user info running to the
    last "@" before the host: a password may hold raw "@", ":" or "/" characters."""
    _, sep, tail = uri.partition("://")
    userinfo, at, host = tail.rpartition("@")
    return (userinfo, host) if sep and at else None


def remember_secret(uri: str) -> None:
    """Have ``redact`` hide this URI's password wherever it appears, also outside a URI
    (a config value, an error that quotes it) and in the spellings that Hydra, YAML, JSON
    and percent-encoding give it."""
    found = _userinfo(uri)
    if found is None or ":" not in found[0]:
        return
    password = found[0].partition(":")[2]
    for raw in {password, urllib.parse.unquote(password)}:
        for spelling in (raw, urllib.parse.quote(raw, safe=""),
                         re.sub(r"([\\()\[\]{}:=, \t])", r"\\\1", raw),  # Hydra's escapes
                         raw.replace("'", "''"),  # YAML single-quoted
                         raw.replace("\\", "\\\\").replace('"', '\\"')):  # JSON
            if len(spelling) >= _MIN_SECRET:
                _SECRETS.add(spelling)


def redact(text: str) -> str:
    """``text`` without the credentials of any ``scheme://user:password@host`` and without
    any password ``remember_secret`` was given (or that a tracking URI in the environment
    holds)."""
    for name in _URI_ENV:
        if os.environ.get(name):
            remember_secret(os.environ[name])
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")  # MLflow's basic auth
    if len(password) >= _MIN_SECRET:
        _SECRETS.add(password)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check_tracking_server(uri: str) -> None:
    """For a tool that reads the store (promote, serve): an http(s) tracking server that
    does not answer fails in seconds, naming only its host and port, and MLflow's own
    retries are bounded for the rest of this process (a user's own settings win)."""
    remember_secret(uri)
    if not _is_server(uri):
        return
    for key, value in _CHECK_ENV.items():
        os.environ.setdefault(key, value)
    _check_reachable(uri)


def _check_reachable(uri: str) -> None:
    """An http(s) store must accept a TCP connection within seconds. Only host and port go
    into the message: the URI may carry credentials."""
    found = _userinfo(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # A raw "/" in the password ends the address early: the host would be a piece of
        # the password.
        if found is not None and "/" in found[0]:
            raise ValueError("a '/' in the user info")
    except ValueError:
        raise TrackingError(f"tracking.uri {redact(uri)} is not a valid address: "
                            "percent-encode the user name and password (/ as %2F, @ as %40, "
                            ": as %3A).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
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
    remember_secret(uri)
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
