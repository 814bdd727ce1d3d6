"""What a rehearsal cluster is made of, written once by ``up`` and read by every other
command: addresses, the process groups to stop, and where each part keeps its files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweep.errors import SweepError

STATE_FILE = "cluster.json"


class ClusterError(SweepError):
    """The rehearsal cluster cannot be started, found or stopped."""


@dataclass
class Part:
    """One long-running process group: ``pgid`` is its leader's pid (each part runs in
    its own session, so stopping the group takes every child it spawned)."""

    name: str
    pgid: int
    log: str
    # Ray nodes: the address they announce (their own loopback address), their working
    # folder (a job's relative path would land here) and their temp dir.
    ip: str = ""
    workdir: str = ""


@dataclass
class ClusterState:
    root: str
    # The mount every node sees: engine cache, sweep folders, the server's artifacts.
    shared: str
    # Node-local files (PostgreSQL's data, Ray's sockets): a short path, since Ray's
    # socket paths must stay under the kernel's 107 characters.
    runtime: str
    ray_address: str
    ray_token: str
    tracking_uri: str
    postgres_uri: str
    postgres_port: int
    tracking_port: int
    parts: list[Part] = field(default_factory=list)

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise ClusterError(f"no part {name!r} in this cluster (parts: "
                           f"{', '.join(p.name for p in self.parts)})")

    @property
    def workers(self) -> list[Part]:
        return [p for p in self.parts if p.name.startswith("worker")]

    def env(self) -> dict[str, str]:
        """What a sweep on the head needs in its environment to join this cluster."""
        return {"RAY_ADDRESS": self.ray_address, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.ray_token, "TRT_SWEEP_TRACKING_URI": self.tracking_uri,
                "TRT_SWEEP_SHARED": self.shared}

    def save(self) -> None:
        """Readable by its owner only: it holds the Ray token."""
        path = Path(self.root) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, root: Path) -> ClusterState:
        path = root / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except OSError:
            raise ClusterError(f"no cluster at {root} (no {STATE_FILE}): start one with "
                               f"`python -m sweep.cluster up --root {root}`") from None
        data["parts"] = [Part(**p) for p in data["parts"]]
        return cls(**data)
