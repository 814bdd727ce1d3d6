"""The test set as the run's MLflow dataset input: the runs table's Dataset column, and
what promote and the summaries compare runs by (a different digest is a different set)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.data.manifest import Utterance
from sweep.infra.files import file_digest
from sweep.tracking.runs import JobRun

if TYPE_CHECKING:
    from sweep.config import DatasetSpec


def dataset_digest(manifest: Path, utterances: list[Utterance]) -> str:
    """The test set by content: the manifest's bytes and every audio file's (12 hex)."""
    h = hashlib.sha256()
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for u in utterances:
        h.update(u.id.encode())
        h.update(bytes.fromhex(file_digest(u.audio_path)))
    return h.hexdigest()[:12]


def log_dataset(job: JobRun, spec: DatasetSpec, utterances: list[Utterance]) -> None:
    """The dataset as the run's MLflow input: name, digest (manifest + audio), source."""
    manifest = spec.folder / spec.manifest
    digest = dataset_digest(manifest, utterances)
    job.dataset(spec.name, digest,
                {"uri": manifest.resolve().as_uri(), "limit": spec.limit},
                {"utterances": len(utterances),
                 "audio_seconds": round(sum(u.duration for u in utterances), 3),
                 "sample_rate": spec.sample_rate})
