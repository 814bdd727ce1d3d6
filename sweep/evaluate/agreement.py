"""How far a job's served outputs are from the fp32 model's: the per-frame disagreement.

WER moves in whole words per test set and can stay flat while a reduced precision changes
what the model says frame by frame; the fraction of frames whose most likely class differs
from the fp32 ONNX run in-process (same chunking, same state round trip) still shows it.
The fp32 reference's log-probabilities are computed once per model and test set and kept
beside the engine cache. That cache is optional: a file that cannot be read is computed
again, one that cannot be written (a full disk, a read-only folder) is a warning, and a
write never leaves a partial file, so what the job measured is never lost to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sweep import keys
from sweep.data.manifest import Utterance
from sweep.model import ModelInterface

log = logging.getLogger(__name__)


def frame_disagreement(reference: dict[str, np.ndarray], served: dict[str, np.ndarray]
                       ) -> float:
    """Fraction of frames whose argmax class differs (a frame one side lacks differs)."""
    changed = total = 0
    for key, a in reference.items():
        b = served[key]
        frames = min(len(a), len(b))
        changed += int(np.count_nonzero(a[:frames].argmax(-1) != b[:frames].argmax(-1)))
        changed += abs(len(a) - len(b))
        total += max(len(a), len(b))
    return changed / total if total else 0.0


def fp32_logprobs(model: ModelInterface, utterances: Sequence[Utterance], cache_dir: Path,
                  onnx_digest: str | None = None) -> dict[str, np.ndarray]:
    """The fp32 ONNX's log-probabilities per utterance (ONNX Runtime, in-process), kept
    under ``keys.reference_key``; ``onnx_digest``: the ONNX's, when the caller has it."""
    from sweep.evaluate.reference import OrtPipeline

    key = keys.reference_key(onnx_digest or keys.file_digest(model.onnx_path), model,
                             utterances)
    path = cache_dir / "reference" / f"{key}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    run = OrtPipeline(model).run(list(utterances))
    out = {r.utterance.id: np.asarray(r.logprobs, np.float32) for r in run.results}
    try:
        save_atomic(path, out)
    except OSError as exc:
        log.warning("the fp32 reference was not cached (%s: %s); the next job computes it "
                    "again", path, exc.strerror or exc)
    return out


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("the cached fp32 reference %s cannot be read (%s); computing it again",
                    path, exc)
        return None


def save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``path`` whole or not at all: a temporary file of its own in the same folder
    (two jobs may write one key at once), then a rename; the temporary file is removed
    whatever fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), 0o644)  # mkstemp's 0600 would hide it from other users
            np.savez(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
