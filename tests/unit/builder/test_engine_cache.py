"""Engine cache: size limit with least-recently-used eviction, and no partial entry after a
full disk (a real tmpfs where this machine lets root mount one, a simulated ENOSPC always)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sweep.builder.cache import META, CacheFullError, EngineCache
from sweep.engine import Engine, EngineFormat
from sweep.errors import BuildError
from sweep.flags import FlagSet


class SizedBuilder:
    """Writes an engine of ``size`` bytes; optionally fails the way a full disk does."""

    name = "sized"

    def __init__(self, size: int = 1000, fail: BaseException | None = None) -> None:
        self.size = size
        self.fail = fail
        self.calls = 0

    def version(self) -> str:
        return "1"

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        self.calls += 1
        log = workdir / "build.log"
        log.write_text("building\n")
        out = workdir / "model.onnx"
        out.write_bytes(b"\0" * self.size)
        if self.fail is not None:
            raise self.fail
        return Engine(path=out, format=EngineFormat.ONNX_EMULATED, flags=flags, builder=self.name,
                      builder_version="1", build_seconds=0.1, log_path=log)


def flags(opt_level: int) -> FlagSet:
    return FlagSet.from_mapping({"opt_level": opt_level})


def leftovers(root: Path) -> list[str]:
    """Everything in the cache folder except the kept logs of failed builds."""
    return sorted(p.name for p in root.iterdir() if p.name != ".failed") if root.exists() else []


def age(engine: Engine, seconds: float) -> None:
    """Pretend the entry was last used ``seconds`` ago."""
    when = time.time() - seconds
    os.utime(engine.path.parent, (when, when))


def test_least_recently_used_entry_goes_first(tiny_onnx, tmp_path):
    builder = SizedBuilder(1000)
    a = EngineCache(tmp_path / "c").build(builder, tiny_onnx, flags(0), "cpu")
    entry = EngineCache(tmp_path / "c").size_bytes()  # engine, log and metadata
    # Room for three entries, not four.
    cache = EngineCache(tmp_path / "c", max_gb=3.5 * entry / 1e9, grace_s=0)
    b, c = (cache.build(builder, tiny_onnx, flags(i), "cpu") for i in (1, 2))
    age(a, 300)
    age(b, 200)
    age(c, 100)
    assert cache.build(builder, tiny_onnx, flags(0), "cpu").cached  # a is used again: newest
    d = cache.build(builder, tiny_onnx, flags(3), "cpu")
    kept = {e.key for e in cache.entries()}
    assert b.path.parent.name not in kept  # least recently used
    assert {a.path.parent.name, c.path.parent.name, d.path.parent.name} <= kept
    assert cache.size_bytes() <= 3.5 * entry
    assert builder.calls == 4
    # An evicted engine is simply built again.
    assert not cache.build(builder, tiny_onnx, flags(1), "cpu").cached
    assert builder.calls == 5


def test_recently_used_entries_survive_until_the_grace_period_ends(tiny_onnx, tmp_path):
    builder = SizedBuilder(1000)
    first = EngineCache(tmp_path / "c").build(builder, tiny_onnx, flags(0), "cpu")
    entry = EngineCache(tmp_path / "c").size_bytes()
    cache = EngineCache(tmp_path / "c", max_gb=1.5 * entry / 1e9, grace_s=60)
    cache.build(builder, tiny_onnx, flags(1), "cpu")
    assert len(cache.entries()) == 2  # over the limit, but `first` may still be in use
    age(first, 120)
    assert cache.evict() == [first.path.parent.name]


def test_an_entry_larger_than_the_limit_is_kept_alone(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "c", max_gb=500 / 1e9, grace_s=0)
    old = cache.build(SizedBuilder(100), tiny_onnx, flags(0), "cpu")
    age(old, 100)
    big = cache.build(SizedBuilder(2000), tiny_onnx, flags(1), "cpu")
    assert [e.key for e in cache.entries()] == [big.path.parent.name]
    assert big.path.exists()


def test_unbounded_cache_never_evicts(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "c")
    for i in range(3):
        age(cache.build(SizedBuilder(1000), tiny_onnx, flags(i), "cpu"), 1000)
    assert cache.evict() == [] and len(cache.entries()) == 3


def test_a_bad_limit_is_refused_with_the_field_named(tmp_path):
    with pytest.raises(BuildError, match=r"builder\.cache_max_gb"):
        EngineCache(tmp_path, max_gb=0)


def test_leftovers_of_killed_builds_are_swept(tiny_onnx, tmp_path):
    root = tmp_path / "c"
    stale = root / ".0123abcd.killed"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    fresh = root / ".4567.building-now"
    fresh.mkdir()
    EngineCache(root, max_gb=1.0).build(SizedBuilder(10), tiny_onnx, flags(0), "cpu")
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    BuildError("emulate build failed: OSError: [Errno 28] No space left on device"),
], ids=["raw", "wrapped-by-builder"])
def test_simulated_full_disk_leaves_nothing(tiny_onnx, tmp_path, failure):
    if isinstance(failure, BuildError):
        failure.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    cache = EngineCache(tmp_path / "c")
    with pytest.raises(CacheFullError, match=r"no space left .* builder\.cache_dir"):
        cache.build(SizedBuilder(1000, fail=failure), tiny_onnx, flags(0), "cpu")
    assert leftovers(tmp_path / "c") == []
    assert cache.entries() == []


def test_other_build_failures_keep_their_log(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "c")
    with pytest.raises(BuildError) as info:
        cache.build(SizedBuilder(10, fail=BuildError("bad flags", None)), tiny_onnx, flags(0),
                    "cpu")
    assert not isinstance(info.value, CacheFullError)
    assert leftovers(tmp_path / "c") == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real disk that fills up (root only; skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the simulated ENOSPC tests cover the logic")
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the simulated "
                    "ENOSPC tests cover the logic")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Fill the file system until about ``leave`` bytes are free."""
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    (mount / "filler").write_bytes(b"\0" * max(free - leave, 0))


@pytest.mark.integration
def test_real_full_disk_with_the_emulate_builder(tiny_onnx, small_tmpfs):
    """The emulator writes a ~25 KB engine into a tmpfs with 8 KB left: the build fails on
    ENOSPC, the error says what to do, and no entry or temporary folder remains."""
    from sweep.builder.emulate import EmulateBuilder

    root = small_tmpfs / "cache"
    root.mkdir()
    fill(small_tmpfs, leave=8 * 1024)
    cache = EngineCache(root, max_gb=1.0)
    with pytest.raises(CacheFullError) as info:
        cache.build(EmulateBuilder(), tiny_onnx, FlagSet.from_mapping({"precision": "fp16"}),
                    "cpu")
    assert "builder.cache_dir" in str(info.value)
    assert leftovers(root) == []
    # Space again: the same key builds and is stored whole.
    (small_tmpfs / "filler").unlink()
    engine = cache.build(EmulateBuilder(), tiny_onnx,
                         FlagSet.from_mapping({"precision": "fp16"}), "cpu")
    assert (engine.path.parent / META).exists() and not engine.cached


def test_cache_builds_once_per_key(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    builder = SizedBuilder()
    flags = FlagSet.from_mapping({"precision": "fp16"})
    first = cache.build(builder, tiny_onnx, flags, "cpu")
    second = cache.build(builder, tiny_onnx, flags, "cpu")
    other = cache.build(builder, tiny_onnx, FlagSet.from_mapping({}), "cpu")
    assert builder.calls == 2
    assert not first.cached and second.cached and not other.cached
    assert first.path == second.path and first.path.exists()
    assert second.flags == flags
    assert first.build_seconds == pytest.approx(0.1)


class GatedBuilder(SizedBuilder):
    """Builds only once every process has missed the cache: two hosts building one key at
    the same moment, with no chance for either to find the other's entry first."""

    def __init__(self, gate: Any) -> None:
        super().__init__()
        self.gate = gate

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        self.gate.wait(timeout=60)
        return super().build(onnx_path, flags, workdir)


def _build_in_process(root: str, onnx: str, gate: Any, out: Any) -> None:
    engine = EngineCache(root).build(GatedBuilder(gate), Path(onnx), flags(3), "cpu")
    out.put((engine.cached, engine.metrics.get("cache_lost_race", 0.0),
             str(engine.path.parent)))


def test_two_processes_building_one_key_at_once_keep_one_entry(tiny_onnx, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    gate, out = context.Barrier(2), context.Queue()
    procs = [context.Process(target=_build_in_process,
                             args=(str(tmp_path / "cache"), str(tiny_onnx), gate, out))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    results = sorted(out.get(timeout=5) for _ in procs)
    # One stored its build; the other built too, lost the rename and took the stored entry.
    assert results[0][:2] == (False, 0.0) and results[1][:2] == (True, 1.0), results
    assert results[0][2] == results[1][2]
    assert leftovers(tmp_path / "cache") == [Path(results[0][2]).name]
