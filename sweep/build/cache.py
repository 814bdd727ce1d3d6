"""Content-addressed engine cache: what was built once is never built again.

Key: the ONNX file's bytes, the flag set's digest, the builder and its version, the device.
An entry is built in a temporary folder beside the cache and renamed into place, so a
crash, a full disk or a concurrent sweep never leaves a partial entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from sweep.build.base import Builder, Engine
from sweep.errors import BuildError
from sweep.flags import FlagSet

META = "engine.json"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(onnx_digest: str, flags: FlagSet, builder: str, builder_version: str,
              device: str) -> str:
    blob = json.dumps([onnx_digest, flags.digest, builder, builder_version, device])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _to_json(engine: Engine, root: Path) -> str:
    data = asdict(engine)
    data["flags"] = engine.flags.as_dict()
    data["path"] = str(engine.path.relative_to(root))
    data["log_path"] = str(engine.log_path.relative_to(root))
    data["artifacts"] = [str(p.relative_to(root)) for p in engine.artifacts]
    return json.dumps(data, indent=2, default=str)


def _from_json(text: str, root: Path) -> Engine:
    data = json.loads(text)
    data["flags"] = FlagSet.from_mapping(data["flags"])
    data["path"] = root / data["path"]
    data["log_path"] = root / data["log_path"]
    data["artifacts"] = tuple(root / p for p in data["artifacts"])
    data["cached"] = True
    return Engine(**data)


class EngineCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    def build(self, builder: Builder, onnx_path: Path, flags: FlagSet, device: str) -> Engine:
        """The cached engine for this key, or a fresh build stored atomically."""
        key = cache_key(file_digest(onnx_path), flags, builder.name, builder.version(), device)
        entry = self.root / key
        if (entry / META).exists():
            os.utime(entry)  # recency, for least-recently-used eviction
            return _from_json((entry / META).read_text(), entry)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            engine = builder.build(onnx_path, flags, tmp)
            (tmp / META).write_text(_to_json(engine, tmp))
            try:
                tmp.rename(entry)
            except OSError:
                # A concurrent sweep stored the same key first; both builds are identical.
                shutil.rmtree(tmp, ignore_errors=True)
                return _from_json((entry / META).read_text(), entry)
        except BuildError as exc:
            # Keep the builder's log for the FAILED run; drop the partial entry.
            if exc.log_path is not None and exc.log_path.exists():
                failed = self.root / ".failed"
                failed.mkdir(exist_ok=True)
                exc.log_path = Path(shutil.copy2(exc.log_path, failed / f"{key}.log"))
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        stored = _from_json((entry / META).read_text(), entry)
        return replace(stored, cached=False, build_seconds=engine.build_seconds)
