"""The test set as the run's MLflow dataset input: the runs table's Dataset column, and
what promote and the summaries compare runs by (a different digest is a different set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweep.tracking.runs import JobRun

if TYPE_CHECKING:
    from sweep.config import DatasetSpec
    from sweep.inputs import ResolvedInputs


def log_dataset(job: JobRun, spec: DatasetSpec, inputs: ResolvedInputs) -> None:
    """The dataset as the run's MLflow input: name, digest (``keys.dataset_digest``: the
    manifest and the audio by content, hashed once when the job resolved its inputs),
    source."""
    utterances = inputs.utterances
    job.dataset(spec.name, inputs.dataset_digest,
                {"uri": inputs.manifest.resolve().as_uri(), "limit": spec.limit},
                {"utterances": len(utterances),
                 "audio_seconds": round(sum(u.duration for u in utterances), 3),
                 "sample_rate": spec.sample_rate})
