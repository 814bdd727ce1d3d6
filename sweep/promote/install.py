"""Install an engine into a production Triton model repository, and take it back out.

Layout, as Triton reads it::

    ROOT/NAME/config.pbtxt            the config of the newest version
    ROOT/NAME/<N>/model.plan          (or model.onnx + model.py + batched.py, emulated)
    ROOT/NAME/<N>/trt-sweep.json      what was installed: model version, run, sha256s
    ROOT/NAME/<N>/config.pbtxt.trt-sweep   this version's config, restored on rollback

A version is written into a hidden temporary folder inside ROOT/NAME (Triton ignores
folders that are not positive integers), every file and the folder are fsynced, and only
then is the folder renamed to ``<N>``: Triton sees either no version N or a complete one,
never a half-copied engine, even after a crash or a full disk. Previous versions stay.
A lock file serialises concurrent promotions of the same model, so two never pick the
same N.

An ensemble (``model=demo_skip_preprocessor``: preprocessing -> model) is installed as one
serving unit (``install_unit``): its member models go into folders of their own named for
the unit's version, ``ROOT/NAME-preprocessing-v<N>`` and ``ROOT/NAME-model-v<N>`` (each
written in a hidden temporary folder, fsynced, renamed into place), which no served
ensemble references yet; then the ensemble's version ``ROOT/NAME/<N>`` appears and its
config, whose steps name exactly those members, replaces ``ROOT/NAME/config.pbtxt`` in one
atomic rename: that rename is the switch, so a client of NAME sees the old unit or the new
one, never a mix. Rollback switches the config back first (the previous unit's members
are still there), then removes the newest unit's members.

Triton keeps one ``config.pbtxt`` per model, not per version, so the config is swapped
by its own atomic rename right after the version appears (and restored on rollback): a
server polling the repository in the instant between the two renames may load the new
version with the previous config. Flag sets of one model share inputs and outputs, so
the configs usually differ only in comments; for a strictly atomic switch run Triton with
``--model-control-mode=explicit`` and load the model after the promotion.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.errors import PromoteError
from sweep.infra.files import file_digest

MANIFEST = "trt-sweep.json"
CONFIG_COPY = "config.pbtxt.trt-sweep"
LOCK = ".trt-sweep.lock"
_TMP_PREFIX = ".trt-sweep-tmp-"
_VERSION = re.compile(r"^[1-9][0-9]*$")  # Triton ignores "0", "01", "latest", ...
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class InstalledVersion:
    number: int
    path: Path
    manifest: dict[str, Any] | None  # None: not installed by trt-sweep

    @property
    def engine_file(self) -> str | None:
        return self.manifest.get("engine_file") if self.manifest else None


def sha256(path: Path) -> str:
    return file_digest(path)


def model_dir(root: Path | str, name: str) -> Path:
    """ROOT/NAME, refused unless it lies directly inside ROOT once symlinks are resolved."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise PromoteError(
            f"the repository root {root_path} does not exist or is not a folder; create it "
            "(or fix --repository-root) first: promote never creates a root it was not given."
        )
    resolved_root = root_path.resolve()
    target = (resolved_root / name).resolve()
    if not target.is_relative_to(resolved_root) or target == resolved_root:
        raise PromoteError(
            f"--model-name {name!r} puts the model at {target}, outside the repository root "
            f"{resolved_root} (after resolving '..' and symlinks). Give a plain Triton model "
            "name such as 'asr'."
        )
    if target.parent != resolved_root:
        raise PromoteError(
            f"--model-name {name!r} puts the model at {target}, not directly inside the "
            f"repository root {resolved_root}, where Triton looks for models. Give a plain "
            "Triton model name such as 'asr'."
        )
    if not _MODEL_NAME.match(name):
        raise PromoteError(
            f"--model-name {name!r} is not a Triton model name: use letters, digits, "
            "'_', '.' and '-', starting with a letter, digit or '_'."
        )
    return target


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy, fsync, and return the sha256 of the bytes written (not of what src holds now)."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            h.update(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _replace_file(path: Path, text: str) -> None:
    """Atomically give ``path`` this content (temporary file beside it, fsync, rename)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    os.close(fd)
    try:
        _write_synced(Path(tmp), text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((path / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def installed_versions(folder: Path) -> list[InstalledVersion]:
    """The versions Triton would see in ROOT/NAME, oldest first."""
    if not folder.is_dir():
        return []
    found = [InstalledVersion(int(p.name), p, None if p.is_symlink() else _manifest(p))
             for p in folder.iterdir() if _VERSION.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda v: v.number)


def verify(version: InstalledVersion) -> None:
    """The installed engine still has the sha256 its manifest recorded."""
    if not version.manifest or not version.engine_file:
        return
    member = version.manifest.get("engine_model")
    path = (version.path.parent.parent / member / "1" if member else version.path) \
        / version.engine_file
    expected = version.manifest.get("engine_sha256")
    actual = sha256(path) if path.is_file() else "missing"
    if actual != expected:
        raise PromoteError(
            f"{path}: the engine's sha256 is {actual}, but {MANIFEST} recorded {expected} when "
            "it was installed. The file was changed or damaged; promote the registered model "
            "version again instead of serving it."
        )


def install(root: Path | str, name: str, files: Mapping[str, Path], engine_file: str,
            engine_sha256: str, config_text: str | None,
            manifest: Mapping[str, Any]) -> InstalledVersion:
    """Add ROOT/NAME/<next N> holding ``files`` (name in the version folder -> source).

    ``files[engine_file]`` must hash to ``engine_sha256``: the bytes are hashed as they are
    copied, so what lands in the repository is exactly what was recorded, or nothing does.
    """
    folder = model_dir(root, name)
    folder.mkdir(exist_ok=True)
    with _locked(folder):
        for stale in folder.glob(_TMP_PREFIX + "*"):  # left by a crash; Triton ignores them
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        versions = installed_versions(folder)
        number = versions[-1].number + 1 if versions else 1
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder))
        try:
            for target, src in files.items():
                digest = _copy_hashing(src, tmp / target)
                if target == engine_file and digest != engine_sha256:
                    raise PromoteError(
                        f"the engine {src} has sha256 {digest}, but its record says "
                        f"{engine_sha256}: it changed after it was recorded. Nothing was "
                        "installed; re-run the sweep job (or restore the artifact)."
                    )
            if config_text is not None:
                _write_synced(tmp / CONFIG_COPY, config_text)
            record = {**manifest, "version": number, "engine_file": engine_file,
                      "engine_sha256": engine_sha256}
            _write_synced(tmp / MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")
            _fsync_dir(tmp)
            os.rename(tmp, folder / str(number))  # the lock guarantees no such folder exists
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(folder)
        if config_text is not None:
            _replace_file(folder / "config.pbtxt", config_text)
        return InstalledVersion(number, folder / str(number), record)


def rollback(root: Path | str, name: str) -> tuple[InstalledVersion, InstalledVersion]:
    """Remove the newest version, which trt-sweep must have installed; return it and the
    version Triton serves from now on. Refused when that would leave no version, or when
    the version that takes over no longer matches its record."""
    folder = model_dir(root, name)
    with _locked(folder) if folder.is_dir() else contextlib.nullcontext():
        versions = installed_versions(folder)
        if not versions:
            raise PromoteError(f"{folder} holds no installed version: nothing to roll back.")
        newest = versions[-1]
        if newest.manifest is None:
            raise PromoteError(
                f"{newest.path} was not installed by trt-sweep (no {MANIFEST}); rollback "
                "removes only versions it installed. Remove it by hand if you mean to."
            )
        if len(versions) < 2:
            raise PromoteError(
                f"{newest.path} is the only version of {name}: removing it would leave Triton "
                "nothing to serve. Promote another version first, or remove it by hand."
            )
        previous = versions[-2]
        verify(previous)
        # Rename away first (atomic: Triton now sees the previous version as the newest),
        # then delete at leisure.
        doomed = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder))
        os.rename(newest.path, doomed / newest.path.name)
        _fsync_dir(folder)
        saved = previous.path / CONFIG_COPY
        if saved.is_file():
            _replace_file(folder / "config.pbtxt", saved.read_text(encoding="utf-8"))
        # An ensemble unit: its members, referenced by no config any more, go too.
        for member in (newest.manifest or {}).get("unit_members", []):
            path = folder.parent / member
            if _MODEL_NAME.match(member) and path.is_dir() and not path.is_symlink():
                os.rename(path, doomed / member)
        _fsync_dir(folder.parent)
        shutil.rmtree(doomed, ignore_errors=True)
        return newest, previous


def member_name(unit: str, member: str, number: int) -> str:
    return f"{unit}-{member}-v{number}"


def _point_steps(config_text: str, members: Mapping[str, str]) -> str:
    """The ensemble config with each step's ``model_name`` pointed at the unit's member
    folder and pinned to its version 1."""
    def swap(m: re.Match[str]) -> str:
        return f'model_name: "{members.get(m.group(1), m.group(1))}"'

    text = re.sub(r'model_name:\s*"([^"]+)"', swap, config_text)
    return re.sub(r"model_version:\s*-1", "model_version: 1", text)


def _rename_config(text: str, name: str) -> str:
    return re.sub(r'(?m)^name: ".*"$', f'name: "{name}"', text, count=1)


def install_unit(root: Path | str, name: str,
                 members: Mapping[str, tuple[Mapping[str, Path], str]],
                 entry_config: str, engine_member: str, engine_file: str,
                 engine_sha256: str, manifest: Mapping[str, Any]) -> InstalledVersion:
    """Install an ensemble and its members as one version N of ROOT/NAME (module
    docstring). ``members``: member name (as the ensemble's steps call it) -> (files of
    its version folder, its config.pbtxt); the engine is ``engine_file`` of
    ``engine_member`` and must hash to ``engine_sha256``."""
    folder = model_dir(root, name)
    folder.mkdir(exist_ok=True)
    root_path = folder.parent
    with _locked(folder):
        for stale in folder.glob(_TMP_PREFIX + "*"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        versions = installed_versions(folder)
        number = versions[-1].number + 1 if versions else 1
        names = {m: member_name(name, m, number) for m in members}
        placed: list[Path] = []
        try:
            for member, (files, config) in members.items():
                target = model_dir(root_path, names[member])
                if target.exists():
                    raise PromoteError(
                        f"{target} exists already: a unit version {number} of {name} was "
                        "installed before without its ensemble version. Remove it by hand.")
                tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder))
                (tmp / "1").mkdir()
                for file_name, src in files.items():
                    digest = _copy_hashing(src, tmp / "1" / file_name)
                    if member == engine_member and file_name == engine_file and \
                            digest != engine_sha256:
                        raise PromoteError(
                            f"the engine {src} has sha256 {digest}, but its record says "
                            f"{engine_sha256}: it changed after it was recorded. Nothing was "
                            "installed; re-run the sweep job (or restore the artifact).")
                _write_synced(tmp / "config.pbtxt", _rename_config(config, names[member]))
                _fsync_dir(tmp / "1")
                _fsync_dir(tmp)
                os.rename(tmp, target)
                placed.append(target)
            _fsync_dir(root_path)
            config_text = _point_steps(_rename_config(entry_config, name), names)
            tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder))
            _write_synced(tmp / CONFIG_COPY, config_text)
            record = {**manifest, "version": number, "engine_file": engine_file,
                      "engine_sha256": engine_sha256, "engine_model": names[engine_member],
                      "unit_members": sorted(names.values())}
            _write_synced(tmp / MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")
            _fsync_dir(tmp)
            os.rename(tmp, folder / str(number))
        except BaseException:
            for done in placed:
                shutil.rmtree(done, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(folder)
        _replace_file(folder / "config.pbtxt", config_text)  # the switch
        return InstalledVersion(number, folder / str(number), record)
