#!/usr/bin/env python3
"""Build (once) the CPU tritonserver image the docker tests and ``server=docker`` use.

No registry is reachable where this project is tested, so no base image can be pulled:
the image is made from a Debian rootfs instead.

1. base ``trt-sweep-cpu-base:<hash>`` (hash of this recipe + requirements-image.txt):
   ``debootstrap --variant=minbase bookworm`` with python3, python3-venv, libpython3.11
   (the python backend stub embeds the system libpython and ignores virtualenvs) and
   ca-certificates; a venv at /opt/venv with numpy<2, onnxruntime, onnx and nvidia-pytriton
   installed offline from a wheelhouse the host's pip downloads (so the host's pip
   configuration, mirrors and certificates apply); the python backend assembled with the
   3.11 stub as ``sweep.server.local`` does; a ``tritonserver`` wrapper on PATH that sets
   LD_LIBRARY_PATH and --backend-directory. Then ``tar -C ROOTFS -c . | docker import``.
2. ``trt-sweep-cpu:<hash>`` (base hash + this project's ``sweep`` sources): the base plus
   the ``sweep`` package in the venv (the containerised build step runs it), labelled
   with where the python-backend models find their packages. Rebuilt in seconds when only
   the sources change. Also tagged ``trt-sweep-cpu:latest``.

Run as root (debootstrap, chroot) with the project's venv:
``python docker/build_image.py``; it prints the image tag on its last line and does
nothing when that tag exists. ``--print-tag`` only prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REQUIREMENTS = HERE / "requirements-image.txt"
REPOSITORY = "trt-sweep-cpu"
BASE_REPOSITORY = "trt-sweep-cpu-base"
LABEL = "trt-sweep"  # sweep.server.base.LABEL; not imported so the recipe stands alone
SUITE = "bookworm"
PYTHON = "3.11"  # bookworm's python3; the stub and the wheels must match it
INCLUDE = ["python3", "python3-venv", f"libpython{PYTHON}", "ca-certificates"]
VENV = "/opt/venv"
SITE_PACKAGES = f"{VENV}/lib/python{PYTHON}/site-packages"
BACKENDS = "/opt/tritonserver/backends"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trt-sweep"

WRAPPER = f"""#!/bin/sh
# tritonserver from the nvidia-pytriton wheel. Its shared libraries sit next to the
# package, and the python backend needs the stub of this image's Python, assembled in
# {BACKENDS} at build time (the wheel keeps one stub per Python version apart).
SP={SITE_PACKAGES}
export LD_LIBRARY_PATH="$SP/nvidia_pytriton.libs${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
exec "$SP/pytriton/tritonserver/bin/tritonserver" \\
    --backend-directory={BACKENDS} \\
    --cache-directory="$SP/pytriton/tritonserver/caches" "$@"
"""


def log(message: str) -> None:
    print(f"[build_image] {message}", file=sys.stderr, flush=True)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def base_hash() -> str:
    recipe = (HERE / "build_image.py").read_bytes()
    return _digest(recipe, REQUIREMENTS.read_bytes(), platform.machine().encode())


def source_files() -> list[Path]:
    pkg = ROOT / "sweep"
    return sorted(p for p in pkg.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def image_hash() -> str:
    parts = [base_hash().encode()]
    for path in source_files():
        parts += [str(path.relative_to(ROOT)).encode(), path.read_bytes()]
    return _digest(*parts)


def tags() -> tuple[str, str]:
    return f"{BASE_REPOSITORY}:{base_hash()}", f"{REPOSITORY}:{image_hash()}"


def run(cmd: list[str], **kw: object) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def chroot(rootfs: Path, cmd: list[str]) -> None:
    # A clean environment: the host's PIP_* settings name paths that do not exist inside.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run(["chroot", str(rootfs), *cmd], env=env)


def requirements() -> list[str]:
    return [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()
            if line.split("#")[0].strip()]


def wheelhouse() -> Path:
    """Wheels for the image's Python, downloaded by the host's pip (its index, mirror and
    certificate settings apply) and kept across builds."""
    target = CACHE / "wheelhouse" / _digest(REQUIREMENTS.read_bytes(),
                                             platform.machine().encode())
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    arch = platform.machine()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(5, 37)]  # glibc <= 2.36
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", "any"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(target),
           "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    for p in platforms:
        cmd += ["--platform", p]
    run(cmd + requirements())
    (target / ".complete").write_text("ok\n")
    return target


def _require_tools() -> None:
    missing = [t for t in ("debootstrap", "chroot", "tar") if shutil.which(t) is None]
    if missing:
        sys.exit(f"build_image: {', '.join(missing)} not found. Install them: "
                 "apt-get install -y debootstrap docker.io")
    if os.geteuid() != 0:
        sys.exit("build_image: debootstrap and chroot need root. Run it as root (sudo), or "
                 "`docker load` an image built elsewhere and tag it trt-sweep-cpu:latest.")


def build_rootfs(rootfs: Path, mirror: str) -> None:
    run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE,
         str(rootfs), mirror])
    # The host's CA bundle, so that pip (and anything else) inside can verify TLS peers the
    # host trusts, proxies included.
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_ca.exists():
        shutil.copy2(host_ca, rootfs / "etc/ssl/certs/ca-certificates.crt")
    wheels = rootfs / "tmp/wheelhouse"
    shutil.copytree(wheelhouse(), wheels)
    (rootfs / "tmp/requirements.txt").write_text("\n".join(requirements()) + "\n")
    chroot(rootfs, [f"/usr/bin/python{PYTHON}", "-m", "venv", VENV])
    chroot(rootfs, [f"{VENV}/bin/pip", "install", "--no-cache-dir", "--no-index",
                    "--find-links", "/tmp/wheelhouse", "-r", "/tmp/requirements.txt"])
    # The python backend, with the stub for this image's Python (as sweep.server.local).
    server = rootfs / SITE_PACKAGES.lstrip("/") / "pytriton" / "tritonserver"
    backend = rootfs / BACKENDS.lstrip("/") / "python"
    backend.mkdir(parents=True)
    for item in (server / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, backend / item.name)
    shutil.copy2(server / "python_backend_stubs" / PYTHON / "triton_python_backend_stub",
                 backend / "triton_python_backend_stub")
    wrapper = rootfs / "usr/local/bin/tritonserver"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    # Smaller image, faster import: nothing below is needed at run time.
    shutil.rmtree(wheels)
    (rootfs / "tmp/requirements.txt").unlink()
    for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/info"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
        (rootfs / junk).mkdir(parents=True, exist_ok=True)


def import_rootfs(client: object, rootfs: Path, tag: str) -> None:
    """``tar -C ROOTFS -c . | docker import - TAG``, streamed (no tarball on disk)."""
    repository, _, version = tag.partition(":")
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        client.api.import_image(  # type: ignore[attr-defined]
            src=tar.stdout, repository=repository, tag=version, stream_src=True,
            changes=[f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                     "/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8", 'CMD ["tritonserver"]'])
    finally:
        if tar.stdout:
            tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit(f"build_image: tar of {rootfs} failed")


def build_app(client: object, base: str, tag: str) -> None:
    """The base plus this project's ``sweep`` package; a Dockerfile FROM a local image
    needs no registry."""
    with tempfile.TemporaryDirectory(prefix="trt-sweep-ctx-") as ctx:
        shutil.copytree(ROOT / "sweep", Path(ctx) / "sweep",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (Path(ctx) / "Dockerfile").write_text(
            f"FROM {base}\n"
            f"COPY sweep {SITE_PACKAGES}/sweep\n"
            f'LABEL {LABEL}="1" {LABEL}.site-packages="{SITE_PACKAGES}" '
            f'{LABEL}.python="{PYTHON}" {LABEL}.base="{base}"\n')
        repository = tag.partition(":")[0]
        client.images.build(path=ctx, tag=tag, rm=True, forcerm=True,  # type: ignore[attr-defined]
                            pull=False, labels={LABEL: "1"})
        client.images.get(tag).tag(repository, "latest")  # type: ignore[attr-defined]


# A tag younger than this may belong to another checkout's test session on the same
# Docker host (each source tree has its own tag): left alone.
PRUNE_AFTER_S = 6 * 3600


def prune(client: object, repository: str, keep: str) -> None:
    """Drop this recipe's older tags (every source edit makes a new app tag); images a
    container still uses, and tags built in the last hours, are left alone."""
    import datetime

    import docker.errors

    now = datetime.datetime.now(datetime.UTC)
    for image in client.images.list(name=repository):  # type: ignore[attr-defined]
        created = datetime.datetime.fromisoformat(
            str(image.attrs.get("Created", "")).split(".")[0].rstrip("Z") + "+00:00")
        if (now - created).total_seconds() < PRUNE_AFTER_S:
            continue
        for tag in image.tags:
            if tag.startswith(f"{repository}:") and tag not in (keep, f"{repository}:latest"):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)  # type: ignore[attr-defined]


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One build at a time on this host (parallel test sessions share the image)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build_image.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_image(mirror: str = "http://deb.debian.org/debian", force: bool = False,
                 workdir: str | None = None) -> str:
    # The docker-py client of the project's venv (imported here: --print-tag needs none).
    import docker.errors
    from docker.client import DockerClient

    base, tag = tags()
    client = DockerClient.from_env(timeout=900)
    client.ping()

    def exists(name: str) -> bool:
        try:
            client.images.get(name)
            return True
        except docker.errors.ImageNotFound:
            return False

    with locked():
        if exists(tag) and not force:
            client.images.get(tag).tag(REPOSITORY, "latest")
            log(f"{tag} exists: nothing to do")
            return tag
        start = time.perf_counter()
        if force or not exists(base):
            _require_tools()
            parent = Path(workdir or "/var/tmp")
            rootfs = Path(tempfile.mkdtemp(prefix="trt-sweep-rootfs-", dir=parent))
            try:
                build_rootfs(rootfs, mirror)
                log(f"rootfs ready after {time.perf_counter() - start:.1f} s; importing")
                import_rootfs(client, rootfs, base)
            finally:
                shutil.rmtree(rootfs, ignore_errors=True)
            log(f"{base} built in {time.perf_counter() - start:.1f} s")
        app_start = time.perf_counter()
        build_app(client, base, tag)
        prune(client, REPOSITORY, tag)
        prune(client, BASE_REPOSITORY, base)
        log(f"{tag} built in {time.perf_counter() - app_start:.1f} s "
            f"(total {time.perf_counter() - start:.1f} s)")
        return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-tag", action="store_true",
                        help="print the tag this recipe and these sources produce, build nothing")
    parser.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    parser.add_argument("--mirror", default=os.environ.get("DEBIAN_MIRROR",
                                                           "http://deb.debian.org/debian"))
    parser.add_argument("--workdir", default=None,
                        help="where the temporary rootfs is assembled (default /var/tmp)")
    args = parser.parse_args(argv)
    if args.print_tag:
        print(tags()[1])
        return 0
    print(ensure_image(args.mirror, args.force, args.workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
