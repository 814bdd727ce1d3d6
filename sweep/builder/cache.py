"""Content-addressed engine cache: what was built once is never built again.

Key: the ONNX file's bytes, the flag set's digest, the builder and its version (for the
emulator, a digest of its own source too), the device.
An entry is built in a temporary folder beside the cache and renamed into place, so a
crash, a full disk or a concurrent sweep never leaves a partial entry behind.

Size limit (``builder.cache_max_gb``): after each store, the least recently used entries
are removed until the cache fits. A hit refreshes an entry's recency (its folder's mtime).
Entries used within ``grace_s`` are never evicted: the job that got one may still be
hard-linking it into a Triton model repository or logging it to MLflow, so the limit can
be exceeded for that long. Eviction renames an entry out of the way before deleting it,
so another process sees either the whole entry or none.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sweep import keys
from sweep.builder.base import Builder
from sweep.engine import Engine
from sweep.errors import BuildError
from sweep.flags import FlagSet

META = "engine.json"
FAILED = ".failed"
# Leftovers of a process killed mid-build (SIGKILL skips every clean-up): removed once this
# old, which no real build takes.
_STALE_TMP_S = 24 * 3600.0


class CacheFullError(BuildError):
    """The disk under the engine cache ran out of space while an entry was being stored."""



def timing_cache_name(tensorrt_version: str, device: str) -> str:
    """The timing cache file for one TensorRT version on one GPU model. trtexec accepts a
    cache written by another GPU or release without a word and its timings then mislead
    the tactic choice, so one shared cache folder holds a file per (version, GPU)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{tensorrt_version}-{device}").strip("-")
    return f"timing-{slug}.cache"


def cache_key(onnx_digest: str, flags: FlagSet, builder: str, builder_version: str,
              device: str) -> str:
    return keys.engine_key(onnx_digest, flags.digest, builder, builder_version, device)


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


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error anywhere in the chain: builders wrap OS errors in their own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        current = current.__cause__ or current.__context__
    return None


def _timed(engine: Engine, seconds: float) -> Engine:
    return replace(engine, metrics={**engine.metrics, "cache_seconds": seconds})


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed under us by another process
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size_bytes: int
    last_used: float


class EngineCache:
    """``build`` returns the cached engine for a key or builds and stores it.

    ``max_gb``: size limit (None: unbounded); ``grace_s``: entries used this recently are
    never evicted.
    """

    def __init__(self, root: Path | str, max_gb: float | None = None,
                 grace_s: float = 600.0) -> None:
        if max_gb is not None and max_gb <= 0:
            raise BuildError(f"builder.cache_max_gb={max_gb}: expected a positive size in GB, "
                             "or null for an unbounded engine cache.")
        self.root = Path(root).expanduser()
        self.max_bytes = None if max_gb is None else int(max_gb * 1e9)
        self.grace_s = grace_s

    # -- lookup and store ---------------------------------------------------------------------

    def build(self, builder: Builder, onnx_path: Path, flags: FlagSet, device: str,
              onnx_digest: str | None = None) -> Engine:
        """The cached engine for this key, or a fresh build stored atomically.

        ``onnx_digest``: the sha256 of ``onnx_path``, when the caller has it (a job resolved
        it once); else the file is hashed here.
        ``metrics["cache_seconds"]``: time spent on the cache itself (hashing the ONNX,
        lookup, storing, eviction), apart from ``build_seconds``; a hit keeps the
        ``build_seconds`` of the build that made the entry.
        """
        start = time.perf_counter()
        key = cache_key(onnx_digest or keys.file_digest(onnx_path), flags, builder.name,
                        builder.version(), device)
        entry = self.root / key
        hit = self._lookup(entry)
        if hit is not None:
            return _timed(hit, time.perf_counter() - start)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        except OSError as exc:
            if _disk_full(exc):
                raise self._full(exc, key) from exc
            raise
        try:
            engine = builder.build(onnx_path, flags, tmp)
            (tmp / META).write_text(_to_json(engine, tmp))
            try:
                tmp.rename(entry)
            except OSError:
                # A concurrent sweep (another host, on a shared cache) stored the same key
                # first: renaming a folder onto a non-empty one fails, so the entry stays
                # whole and ours goes; both builds are identical. The run records the race.
                stored = self._lookup(entry)
                if stored is None:
                    raise
                raced = replace(stored, metrics={**stored.metrics, "cache_lost_race": 1.0})
                return _timed(raced, time.perf_counter() - start)
        except BuildError as exc:
            if _disk_full(exc):
                raise self._full(exc, key) from exc
            self._keep_failed_log(exc, key)
            raise
        except OSError as exc:
            if _disk_full(exc):
                raise self._full(exc, key) from exc
            raise
        finally:
            # Whatever happened, the temporary folder never stays: on success it was renamed.
            shutil.rmtree(tmp, ignore_errors=True)
        stored_engine = _from_json((entry / META).read_text(), entry)
        self.evict(keep=key)
        overhead = max(time.perf_counter() - start - engine.build_seconds, 0.0)
        return _timed(replace(stored_engine, cached=False, build_seconds=engine.build_seconds),
                      overhead)

    def _lookup(self, entry: Path) -> Engine | None:
        try:
            text = (entry / META).read_text()
        except OSError:  # absent, or evicted by another process between two calls
            return None
        with contextlib.suppress(OSError):
            os.utime(entry)  # recency, for least-recently-used eviction
        return _from_json(text, entry)

    def _keep_failed_log(self, exc: BuildError, key: str) -> None:
        """Copy the builder's log out of the temporary folder for the FAILED run."""
        if exc.log_path is None or not exc.log_path.exists():
            return
        failed = self.root / FAILED
        try:
            failed.mkdir(exist_ok=True)
            exc.log_path = Path(shutil.copy2(exc.log_path, failed / f"{key}.log"))
        except OSError:
            exc.log_path = None  # the log lived in the temporary folder, which is going

    def _full(self, exc: BaseException, key: str) -> CacheFullError:
        # Quote the OS error, not a builder's wrapper: that names a log in the temporary
        # folder, which is gone by now.
        os_error = _disk_full(exc) or exc
        limit = "" if self.max_bytes is None else \
            f" (builder.cache_max_gb={self.max_bytes / 1e9:g}: keep it below the free space)"
        return CacheFullError(
            f"no space left on the disk under the engine cache {self.root} while storing entry "
            f"{key}{limit}. Nothing partial was kept. Free space there, lower "
            "builder.cache_max_gb, or point builder.cache_dir at a larger disk. "
            f"({os_error})")

    # -- size limit -----------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Complete entries, least recently used first."""
        found = []
        if not self.root.is_dir():
            return []
        for path in self.root.iterdir():
            if path.name.startswith(".") or not (path / META).exists():
                continue
            try:
                last_used = path.stat().st_mtime
            except OSError:
                continue
            found.append(CacheEntry(path.name, path, _tree_size(path), last_used))
        return sorted(found, key=lambda e: e.last_used)

    def size_bytes(self) -> int:
        return sum(e.size_bytes for e in self.entries())

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the cache fits ``max_gb``; return the
        keys removed. ``keep`` (the entry just stored) and entries used within ``grace_s``
        stay even when the cache is still too large."""
        self._remove_stale_tmp()
        if self.max_bytes is None:
            return []
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        now = time.time()
        removed: list[str] = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.key == keep or now - entry.last_used < self.grace_s:
                continue
            if self._remove(entry.path):
                removed.append(entry.key)
                total -= entry.size_bytes
        return removed

    def _remove(self, path: Path) -> bool:
        # Rename first (atomic): a reader sees the whole entry or a miss, never half of one.
        doomed = path.with_name(f".evict-{path.name}.{os.getpid()}")
        try:
            path.rename(doomed)
        except OSError:  # another process evicted or is evicting it
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for path in self._tmp_folders():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > _STALE_TMP_S or path.name.startswith(".evict-"):
                    shutil.rmtree(path, ignore_errors=True)

    def _tmp_folders(self) -> Iterator[Path]:
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith(".") and path.name != FAILED and path.is_dir():
                    yield path
