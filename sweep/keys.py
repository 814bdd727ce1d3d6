"""Content keys: every digest the sweep files a result or a cache entry under, one
definition each, so two places can never disagree on what "the same model" or "the same
test set" means.

Files are hashed through :func:`file_digest` only, and a job hashes its ONNX and its audio
once (``sweep/inputs.py``, ``ResolvedInputs``); the keys below take those digests, never a
path to hash again. What each key is made of, and so when an entry is reused:

* :func:`job_identity`: resume (``sweep/tracking/resume.py`` says what enters it);
* :func:`engine_key`: the engine cache (``sweep/builder/cache.py``);
* :func:`typed_key`: the typed ONNX of a flag set realised in the graph;
* :func:`calibration_pairs_key`: the streamed (audio chunk, state) calibration pairs;
* :func:`reference_key`: the fp32 reference's log-probabilities (frame disagreement);
* :func:`reference_pairs_key`: trtexec's reference pairs for a build-route search;
* :func:`flags_digest`: a flag set; :func:`code_digest`: the emulator's own code;
* :func:`utterances_digest`, :func:`calibration_digest`, :func:`dataset_digest`,
  :func:`arrays_digest`: the data those keys are made of; :func:`sweep_key`: a sweep
  command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.infra import files

if TYPE_CHECKING:
    import numpy as np

    from sweep.data.manifest import Utterance
    from sweep.model import ModelInterface

# (utterance id, sha256 of its audio file's bytes), in manifest order.
AudioDigests = Sequence[tuple[str, str]]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes: the one place a model or an audio file is hashed."""
    return files.file_digest(path)


def audio_digests(utterances: Iterable[Utterance]) -> tuple[tuple[str, str], ...]:
    return tuple((u.id, file_digest(u.audio_path)) for u in utterances)


def _sha256(blob: str | bytes) -> str:
    return hashlib.sha256(blob.encode() if isinstance(blob, str) else blob).hexdigest()


# -- the data ------------------------------------------------------------------------------

def utterances_digest(utterances: Iterable[Utterance]) -> str:
    """The evaluation data by content (id, transcript, duration), not by location."""
    h = hashlib.sha256()
    for u in utterances:
        h.update(json.dumps([u.id, u.text, round(float(u.duration), 4)],
                            ensure_ascii=False).encode())
    return h.hexdigest()


def calibration_digest(audio: AudioDigests) -> str:
    """The calibration audio by content: ids and the bytes of each file."""
    h = hashlib.sha256()
    for uid, digest in audio:
        h.update(json.dumps([uid, digest]).encode())
    return h.hexdigest()


def dataset_digest(manifest: Path, audio: AudioDigests) -> str:
    """The test set by content, as MLflow's dataset input shows it: the manifest's bytes
    and every audio file's (12 hex)."""
    h = hashlib.sha256()
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for uid, digest in audio:
        h.update(uid.encode())
        h.update(bytes.fromhex(digest))
    return h.hexdigest()[:12]


def arrays_digest(arrays: Mapping[str, np.ndarray], rows: int | None = None) -> str:
    """Named arrays by content (the first ``rows`` of each), names sorted (16 hex)."""
    return _arrays(hashlib.sha256(), arrays, rows).hexdigest()[:16]


def _arrays(h: Any, arrays: Mapping[str, np.ndarray], rows: int | None) -> Any:
    import numpy as np

    for name in sorted(arrays):
        h.update(name.encode())
        value = arrays[name] if rows is None else arrays[name][:rows]
        h.update(np.ascontiguousarray(value).tobytes())
    return h


# -- the keys ------------------------------------------------------------------------------

def flags_digest(canonical: Mapping[str, Any]) -> str:
    """A flag set by what it asks (``FlagSet.digest``'s canonical form, 12 hex)."""
    return _sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")))[:12]


def text_digest(text: str, length: int) -> str:
    """A short name for a long value (a build route in a flag set's label)."""
    return _sha256(text)[:length]


def code_digest(sources: Iterable[Path]) -> str:
    """Source files by content, in order (8 hex): a tool's own code in a cache key, where
    its version number does not change between fixes."""
    h = hashlib.sha256()
    for path in sources:
        h.update(path.read_bytes())
    return h.hexdigest()[:8]


def job_identity(*, flags_digest: str, onnx_digest: str, data_digest: str, device: str,
                 settings: Mapping[str, Any], calibration_digest: str | None = None) -> str:
    """A stable digest (24 hex digits) of everything that decides a job's results
    (``settings``: the relevant settings, ``resume.relevant_settings``)."""
    what: dict[str, Any] = {"flags": flags_digest, "onnx": onnx_digest, "data": data_digest,
                            "device": device, "settings": settings}
    if calibration_digest is not None:
        # Only calibrated jobs carry it: the others' identities stay what they were.
        what["calibration"] = calibration_digest
    return _sha256(json.dumps(what, sort_keys=True, separators=(",", ":"), default=str))[:24]


def engine_key(onnx_digest: str, flags_digest: str, builder: str, builder_version: str,
               device: str) -> str:
    """An engine: the bytes it is built from, the flag set, the builder and its version,
    the device (24 hex)."""
    return _sha256(json.dumps([onnx_digest, flags_digest, builder, builder_version,
                               device]))[:24]


def typed_key(ask: Mapping[str, Any], source_digest: str) -> str:
    """A typed ONNX: what the flag set asks of the graph (``ask``, the precision stage's
    recipe) and the source ONNX's bytes (24 hex)."""
    return _sha256(json.dumps({**ask, "source": source_digest}, sort_keys=True))[:24]


def calibration_pairs_key(onnx_digest: str, model: ModelInterface, audio: AudioDigests
                          ) -> str:
    """The calibration pairs: the model and how it is streamed, the audio's bytes (24 hex)."""
    ask = [onnx_digest, model.chunk_ms, model.pad_ms, model.left_context_samples, model.scale,
           [list(pair) for pair in audio]]
    return _sha256(json.dumps(ask))[:24]


def reference_key(onnx_digest: str, model: ModelInterface, utterances: Iterable[Utterance]
                  ) -> str:
    """The fp32 reference's log-probabilities: the model, its chunking, the utterances by
    id and path (24 hex)."""
    return _sha256(json.dumps([onnx_digest, model.name, model.chunk_ms, model.pad_ms,
                               [(u.id, str(u.audio_path)) for u in utterances]]))[:24]


def reference_pairs_key(onnx_digest: str, arrays: Mapping[str, np.ndarray], rows: int,
                        batch: int, count: int, flags_digest: str) -> str:
    """trtexec's reference pairs: the model's bytes, the first ``rows`` streamed inputs,
    the batch, the number of pairs, the flag set (16 hex)."""
    h = _arrays(hashlib.sha256(bytes.fromhex(onnx_digest)), arrays, rows)
    h.update(json.dumps([batch, count, flags_digest]).encode())
    return str(h.hexdigest())[:16]


def sweep_key(kept_overrides: Sequence[str]) -> str:
    """A sweep command: its overrides, sorted, as ``resume.sweep_key`` keeps them (16 hex)."""
    return _sha256(json.dumps(sorted(kept_overrides)))[:16]
