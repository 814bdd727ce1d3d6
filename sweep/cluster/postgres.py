"""A throwaway PostgreSQL for the tracking server: initdb into a fresh folder, one
``postgres`` process on a loopback port, a database ``mlflow`` owned by user ``mlflow``.

Password authentication (scram-sha-256) on every connection, the socket's included: with
``trust`` any local user could connect as the superuser and run shell commands as the
``postgres`` user (COPY ... TO PROGRAM). The password is generated here and kept in a file
only its owner can read (``password_file``); it never goes on a command line, which every
local user can read in /proc.

PostgreSQL refuses to run as root: as root, its files belong to the ``postgres`` user
(Debian's package creates it) and its processes run as that user through setpriv."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from sweep.cluster.state import ClusterError, Part
from sweep.infra.processes import start_group

USER = "mlflow"
DATABASE = "mlflow"
PASSWORD_FILE = "postgres.password"
_INSTALL = ("install PostgreSQL (Debian: `apt-get install postgresql`), or put its bin "
            "folder (initdb, postgres) on PATH")


def bin_dir() -> Path:
    """The folder that holds initdb, postgres and createdb: Debian's versioned folder
    (its package puts none of them on PATH), else the one of initdb on PATH."""
    tools = ("initdb", "postgres", "createdb")
    found = shutil.which("initdb")
    candidates = [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                                                 reverse=True)]
    candidates += [Path(found).parent] if found else []
    for folder in candidates:
        if all((folder / tool).exists() for tool in tools):
            return folder
    raise ClusterError(f"PostgreSQL is not installed (no folder with {', '.join(tools)}): "
                       f"{_INSTALL}.")


def _as_owner() -> tuple[list[str], int | None, int | None]:
    """The argv prefix that runs a PostgreSQL command as its owner, and that owner's ids
    (None: the current user, who is not root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError("PostgreSQL refuses to run as root and there is no `postgres` "
                           f"user to run it as: {_INSTALL}, which creates it.") from None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ClusterError("running PostgreSQL as its own user needs setpriv (util-linux).")
    return ([setpriv, f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}",
             "--init-groups", "--"], owner.pw_uid, owner.pw_gid)


def password_file(runtime: Path) -> Path:
    return runtime / PASSWORD_FILE


def password(runtime: Path) -> str:
    return password_file(runtime).read_text().strip()


def write_private(path: Path, text: str, uid: int | None = None, gid: int | None = None
                  ) -> None:
    """``text`` into a new file that only its owner (``uid``, default: this user) can read,
    created with that mode: never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if uid is not None and gid is not None:
            os.fchown(fd, uid, gid)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def start(runtime: Path, port: int, log: Path) -> Part:
    """A fresh cluster in ``runtime/pg`` serving on 127.0.0.1:``port``, started (not yet
    ready: ``create_database`` waits for it), its superuser's password in
    ``password_file(runtime)``."""
    prefix, uid, gid = _as_owner()
    bins = bin_dir()
    data, sockets = runtime / "pg", runtime / "pgsock"
    for folder in (data, sockets):
        folder.mkdir(mode=0o700)
        if uid is not None and gid is not None:
            os.chown(folder, uid, gid)
    secret = secrets.token_urlsafe(24)  # URL-safe: it goes into a URI as is
    write_private(password_file(runtime), secret + "\n")
    # initdb runs as the postgres user and reads the password from a file of its own.
    init_password = runtime / "pg-init-password"
    write_private(init_password, secret + "\n", uid, gid)
    try:
        init = subprocess.run([*prefix, str(bins / "initdb"), "-D", str(data), "-U", USER,
                               "--auth=scram-sha-256", f"--pwfile={init_password}",
                               "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, timeout=120)
    finally:
        init_password.unlink(missing_ok=True)
    if init.returncode != 0:
        raise ClusterError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-800:]}")
    pgid = start_group([*prefix, str(bins / "postgres"), "-D", str(data), "-p", str(port),
                        "-h", "127.0.0.1", "-k", str(sockets),
                        # A rehearsal: durability is not what is tested, start-up time is.
                        "-c", "fsync=off", "-c", "shared_buffers=16MB"], log)
    return Part("postgres", pgid, str(log), ip="127.0.0.1")


def create_database(runtime: Path, port: int, log: Path, timeout_s: float = 60.0) -> str:
    """Wait for the server, create the ``mlflow`` database; returns its SQLAlchemy URI
    (psycopg2, MLflow's default driver for ``postgresql://``) WITHOUT the password:
    ``with_password`` adds it where a connection is made."""
    _wait_ready(port, log, timeout_s)
    created = subprocess.run([str(bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                              "-U", USER, "--no-password", DATABASE],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PGPASSWORD": password(runtime)})
    if created.returncode != 0:
        raise ClusterError(f"createdb failed: {created.stderr.strip()[-800:]}")
    return f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"


def with_password(uri: str, runtime: Path) -> str:
    """``uri`` with the password of ``password_file(runtime)``; ``redact`` hides it."""
    from sweep.tracking.store import remember_secret

    scheme, _, rest = uri.partition("://")
    full = f"{scheme}://{USER}:{password(runtime)}@{rest.split('@', 1)[-1]}"
    remember_secret(full)
    return full


def _wait_ready(port: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if "ready to accept connections" in log.read_text(errors="replace"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ClusterError(f"PostgreSQL did not accept connections on port {port} within "
                       f"{timeout_s:.0f} s; its log: {log}")
