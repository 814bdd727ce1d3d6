"""How far a job's served outputs are from the fp32 model's: the per-frame disagreement.

WER moves in whole words per test set and can stay flat while a reduced precision changes
what the model says frame by frame; the fraction of frames whose most likely class differs
from the fp32 ONNX run in-process (same chunking, same state round trip) still shows it.
The fp32 reference's log-probabilities are computed once per model and test set and kept
beside the engine cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from sweep.data.manifest import Utterance
from sweep.infra.files import file_digest
from sweep.model import ModelInterface


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


def fp32_logprobs(model: ModelInterface, utterances: list[Utterance], cache_dir: Path
                  ) -> dict[str, np.ndarray]:
    """The fp32 ONNX's log-probabilities per utterance (ONNX Runtime, in-process)."""
    from sweep.evaluate.reference import OrtPipeline

    key = hashlib.sha256(json.dumps([
        file_digest(model.onnx_path), model.name, model.chunk_ms, model.pad_ms,
        [(u.id, str(u.audio_path)) for u in utterances]]).encode()).hexdigest()[:24]
    path = cache_dir / "reference" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    run = OrtPipeline(model).run(utterances)
    out = {r.utterance.id: np.asarray(r.logprobs, np.float32) for r in run.results}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out
