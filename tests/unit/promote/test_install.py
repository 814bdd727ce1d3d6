"""Installing engines into a Triton model repository: atomic versions, path safety,
rollback (sweep/promote/install.py), on a real filesystem."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from sweep.errors import PromoteError
from sweep.promote import install


def _engine(tmp_path: Path, content: bytes) -> tuple[Path, str]:
    path = tmp_path / f"engine-{hashlib.sha1(content).hexdigest()[:6]}.plan"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def _install(root: Path, src: Path, digest: str, config: str = 'name: "x"\n',
             name: str = "asr", extra: Mapping[str, Path] | None = None
             ) -> install.InstalledVersion:
    return install.install(root, name, {"model.plan": src, **(extra or {})}, "model.plan", digest,
                           config, {"registered_model": "m", "registered_version": "1"})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def test_versions_are_numbered_complete_and_kept(root: Path, tmp_path: Path):
    a, da = _engine(tmp_path, b"engine A")
    b, db = _engine(tmp_path, b"engine B")
    first = _install(root, a, da, 'name: "asr"\n# A\n')
    second = _install(root, b, db, 'name: "asr"\n# B\n')
    assert (first.number, second.number) == (1, 2)
    assert (root / "asr" / "1" / "model.plan").read_bytes() == b"engine A"
    assert (root / "asr" / "2" / "model.plan").read_bytes() == b"engine B"
    assert (root / "asr" / "config.pbtxt").read_text().endswith("# B\n")
    manifest = json.loads((root / "asr" / "2" / install.MANIFEST).read_text())
    assert manifest["engine_sha256"] == db and manifest["version"] == 2
    assert (root / "asr" / "1" / install.CONFIG_COPY).read_text().endswith("# A\n")
    # No temporary folder is left for Triton to trip over.
    assert sorted(p.name for p in (root / "asr").iterdir()) == [
        ".trt-sweep.lock", "1", "2", "config.pbtxt"]


def test_numbering_follows_what_triton_counts(root: Path, tmp_path: Path):
    for name in ("0", "01", "latest", "7"):
        (root / "asr" / name).mkdir(parents=True)
    src, digest = _engine(tmp_path, b"x")
    assert _install(root, src, digest).number == 8


def test_a_changed_engine_installs_nothing(root: Path, tmp_path: Path):
    src, digest = _engine(tmp_path, b"recorded")
    src.write_bytes(b"tampered")
    with pytest.raises(PromoteError, match="changed after it was recorded"):
        _install(root, src, digest)
    assert [p.name for p in (root / "asr").iterdir()] == [".trt-sweep.lock"]


def test_a_failure_midway_leaves_no_partial_version(root: Path, tmp_path: Path):
    src, digest = _engine(tmp_path, b"fine")
    with pytest.raises(FileNotFoundError):
        _install(root, src, digest, extra={"model.py": tmp_path / "missing.py"})
    assert not any(p.name != ".trt-sweep.lock" for p in (root / "asr").iterdir())


def test_a_crashed_install_is_cleaned_up_by_the_next(root: Path, tmp_path: Path):
    stale = root / "asr" / ".trt-sweep-tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "model.plan").write_bytes(b"half")
    src, digest = _engine(tmp_path, b"whole")
    assert _install(root, src, digest).number == 1
    assert not stale.exists()


def test_concurrent_installs_get_distinct_versions(root: Path, tmp_path: Path):
    engines = [_engine(tmp_path, f"engine {i}".encode()) for i in range(6)]
    numbers: list[int] = []
    threads = [threading.Thread(target=lambda e=e: numbers.append(_install(root, *e).number))
               for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("name", ["../escape", "..", ".", "a/../../escape", "/etc"])
def test_names_that_leave_the_root_are_refused(root: Path, name: str):
    with pytest.raises(PromoteError, match="outside the repository root"):
        install.model_dir(root, name)


def test_nested_names_are_refused(root: Path):
    with pytest.raises(PromoteError, match="not directly inside"):
        install.model_dir(root, "sub/model")


def test_a_symlink_out_of_the_root_is_refused(root: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "asr").symlink_to(outside)
    src, digest = _engine(tmp_path, b"x")
    with pytest.raises(PromoteError, match="outside the repository root"):
        _install(root, src, digest)
    assert list(outside.iterdir()) == []


def test_bad_names_and_missing_roots_are_refused(root: Path, tmp_path: Path):
    with pytest.raises(PromoteError, match="not a Triton model name"):
        install.model_dir(root, "-rf")
    with pytest.raises(PromoteError, match="does not exist"):
        install.model_dir(tmp_path / "nope", "asr")


def test_rollback_removes_the_newest_and_restores_its_config(root: Path, tmp_path: Path):
    a, da = _engine(tmp_path, b"A")
    b, db = _engine(tmp_path, b"B")
    _install(root, a, da, 'name: "asr"\n# A\n')
    _install(root, b, db, 'name: "asr"\n# B\n')
    removed, current = install.rollback(root, "asr")
    assert (removed.number, current.number) == (2, 1)
    assert not (root / "asr" / "2").exists()
    assert (root / "asr" / "config.pbtxt").read_text().endswith("# A\n")
    assert not list((root / "asr").glob(".trt-sweep-tmp-*"))
    with pytest.raises(PromoteError, match="only version"):
        install.rollback(root, "asr")
    assert (root / "asr" / "1" / "model.plan").exists()


def test_rollback_touches_only_what_it_installed(root: Path, tmp_path: Path):
    a, da = _engine(tmp_path, b"A")
    _install(root, a, da)
    (root / "asr" / "2").mkdir()
    (root / "asr" / "2" / "model.plan").write_bytes(b"someone else's")
    with pytest.raises(PromoteError, match="not installed by trt-sweep"):
        install.rollback(root, "asr")
    assert (root / "asr" / "2" / "model.plan").exists()


def test_rollback_refuses_to_fall_back_to_a_damaged_version(root: Path, tmp_path: Path):
    a, da = _engine(tmp_path, b"A")
    b, db = _engine(tmp_path, b"B")
    _install(root, a, da)
    _install(root, b, db)
    os.truncate(root / "asr" / "1" / "model.plan", 0)
    with pytest.raises(PromoteError, match="changed or damaged"):
        install.rollback(root, "asr")
    assert (root / "asr" / "2" / "model.plan").read_bytes() == b"B"
