"""The fp32 reference cache on a disk that takes no write: a full disk or a read-only one
under ``<builder.cache_dir>/../reference``. Real filesystems (a tmpfs mounted there), not
a patched ``open``: the job must finish with what it measured, warn once, and leave no
partial file."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Row, assert_clean, run_sweep

pytestmark = pytest.mark.integration

FAST = ["dataset=demo_tiny", "dataset.limit=1", "eval.streams=1"]


@contextlib.contextmanager
def _mounted(folder: Path, kind: str) -> Iterator[None]:
    """A 64 KiB tmpfs at ``folder``: filled to the last byte ("full") or mounted read-only."""
    folder.mkdir(parents=True)
    options = "size=64k,ro" if kind == "read-only" else "size=64k"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        if kind == "full":
            with open(folder / "filler", "wb", buffering=0) as filler, \
                    contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
            probe = folder / "probe"
            with pytest.raises(OSError) as raised, open(probe, "wb", buffering=0) as f:
                f.write(b"\0" * 4096)
            assert raised.value.errno == errno.ENOSPC
            probe.unlink(missing_ok=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.fault("the fp32 reference cache cannot be written after the evaluation",
                   "the job FINISHED with its WER and latency logged, one warning, no partial "
                   ".tmp.npz")
@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_reference_cache_write_fails(kind: str, tmp_path: Path, warm_cache: Path,
                                     row: Row) -> None:
    # derived_dir (the reference's home) is the engine cache's parent: a folder of this
    # test's own, with a copy of the warm engine cache in it.
    cache = tmp_path / "derived" / "engines"
    shutil.copytree(warm_cache, cache)
    reference = cache.parent / "reference"
    with _mounted(reference, kind):
        sweep = run_sweep(["-m", "trt.precision=fp32", *FAST], tmp_path / "sweep",
                          cache=cache)
        left = sorted(p.name for p in reference.iterdir())
    assert sweep.proc.returncode == 0, sweep.stderr[-3000:]
    (job,) = sweep.jobs()
    assert job.info.status == "FINISHED", job.data.tags.get("error")
    metrics = job.data.metrics
    assert {"wer", "cer", "latency_p99_ms", "frame_disagreement"} <= set(metrics), metrics
    reason = "No space left on device" if kind == "full" else "Read-only file system"
    warning = "the fp32 reference was not cached"
    assert sweep.output.count(warning) == 1, sweep.output[-3000:]
    assert reason in sweep.output, sweep.output[-3000:]
    assert left == (["filler"] if kind == "full" else []), left
    assert not os.path.ismount(reference)
    row.outcome(f"exit 0, job FINISHED with wer {metrics['wer']:.4f} and latency_p99_ms "
                f"{metrics['latency_p99_ms']:.1f} logged; one warning '{warning} (... "
                f"{reason})'; nothing but {left or 'nothing'} in the reference folder")
    row.cleanup(assert_clean(sweep))
