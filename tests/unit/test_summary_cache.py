import math
from pathlib import Path

import pytest

from sweep.build.base import Engine
from sweep.build.cache import EngineCache
from sweep.errors import BuildError
from sweep.flags import FlagSet
from sweep.summary import pareto_front


def test_pareto_front():
    points = [(10, 0.2), (5, 0.3), (20, 0.1), (12, 0.25), (5, 0.35), (math.nan, 0.0)]
    assert sorted(pareto_front(points)) == [0, 1, 2]


class CountingBuilder:
    name = "counting"

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def version(self) -> str:
        return "1"

    def build(self, onnx_path: Path, flags: FlagSet, workdir: Path) -> Engine:
        self.calls += 1
        log = workdir / "build.log"
        log.write_text("building\n")
        if self.fail:
            raise BuildError("boom", log)
        out = workdir / "model.onnx"
        out.write_bytes(onnx_path.read_bytes())
        return Engine(path=out, format="onnx_emulated", flags=flags, builder=self.name,
                      builder_version="1", build_seconds=1.5, log_path=log)


def test_cache_builds_once_per_key(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    builder = CountingBuilder()
    flags = FlagSet.from_mapping({"precision": "fp16"})
    first = cache.build(builder, tiny_onnx, flags, "cpu")
    second = cache.build(builder, tiny_onnx, flags, "cpu")
    other = cache.build(builder, tiny_onnx, FlagSet.from_mapping({}), "cpu")
    assert builder.calls == 2
    assert not first.cached and second.cached and not other.cached
    assert first.path == second.path and first.path.exists()
    assert second.flags == flags
    assert first.build_seconds == 1.5


def test_failed_build_leaves_no_entry_but_keeps_the_log(tiny_onnx, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    with pytest.raises(BuildError) as info:
        cache.build(CountingBuilder(fail=True), tiny_onnx, FlagSet(), "cpu")
    entries = [p for p in (tmp_path / "cache").iterdir() if p.name != ".failed"]
    assert entries == []
    assert info.value.log_path is not None
    assert info.value.log_path.read_text() == "building\n"
