"""One typed record of a logged job, read back from MLflow the same way by every reader:
the summary, the verdict, promote, serve and resume.

A job resumed from an identical FINISHED run (tag ``resumed_from``) has no artifacts of its
own and was measured at another moment: its record follows the tag to the original run for
the engine, the transcripts and where and when the figures were measured. The flag set
comes back as a :class:`~sweep.flags.FlagSet` (from the ``trt-sweep.flags`` tag the job
wrote; runs logged before it existed are read from their ``trt.*`` params).
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.flags import FlagSet
from sweep.tracking import tags as tag

ENGINE_FILES = ("model.plan", "model.onnx")
_NO_OVERRIDE = ("", "-", "{}")


@dataclass(frozen=True)
class Measured:
    """Where a resumed job's figures come from: the original run, the sweep it ran in, when
    it started, and whether that sweep ran the same command as this one (a resumption of
    an interrupted sweep) or another one (reuse across sweeps)."""

    run_id: str
    parent_id: str | None
    started: datetime
    same_sweep: bool

    def describe(self) -> str:
        where = "an earlier run of this sweep" if self.same_sweep else (
            f"sweep {self.parent_id[:8]}" if self.parent_id else "a single run")
        return (f"measured in {where} (run {self.run_id[:8]}, "
                f"{self.started.strftime('%Y-%m-%d %H:%M')} UTC)")


@dataclass(frozen=True)
class JobRecord:
    """A job run as every reader needs it."""

    run_id: str
    label: str
    status: str
    job_num: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    flags: FlagSet | None = None
    parent_id: str | None = None
    started: datetime | None = None
    # e.g. "engine/model.plan"; None when not logged (or not looked up)
    engine_artifact: str | None = None
    # A resumed job's original run (its artifacts and the moment it was measured).
    measured: Measured | None = None

    # --- figures ---------------------------------------------------------------------
    def metric(self, name: str) -> float | None:
        """The metric's value, or None when missing or NaN (a job that died midway)."""
        value = self.metrics.get(name)
        if value is None or math.isnan(value):
            return None
        return float(value)

    def get(self, name: str) -> float:
        """The metric or NaN: for tables and plots."""
        value = self.metric(name)
        return math.nan if value is None else value

    # --- what it is ------------------------------------------------------------------
    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def device(self) -> str:
        return self.tags.get(tag.DEVICE, "")

    @property
    def builder_version(self) -> str:
        return self.tags.get(tag.BUILDER_VERSION, "")

    @property
    def dataset(self) -> str:
        return self.tags.get(tag.DATASET, "")

    @property
    def model(self) -> str:
        return self.tags.get(tag.MODEL_NAME, "")

    @property
    def group(self) -> tuple[str, str]:
        """What a job's figures are comparable within: its test set (name and digest of
        manifest + audio) and its model interface."""
        digest = self.tags.get(tag.DATASET_DIGEST)
        dataset = self.tags.get(tag.DATASET, "?")
        return (f"{dataset} (#{digest})" if digest else dataset,
                self.tags.get(tag.MODEL_NAME, "?"))

    @property
    def error(self) -> str:
        return self.tags.get(tag.ERROR, "")

    @property
    def dry_run(self) -> bool:
        return self.tags.get(tag.DRY_RUN) == "true"

    @property
    def emulated(self) -> bool:
        """Built by the CPU emulator: its latency is ONNX Runtime's, not TensorRT's."""
        return self.tags.get(tag.BUILDER) == "emulate"

    @property
    def resumed_from(self) -> str | None:
        return self.tags.get(tag.RESUMED_FROM) or None

    @property
    def artifact_run(self) -> str:
        """The run that holds this job's engine, configs and transcripts."""
        return self.resumed_from or self.run_id

    @property
    def precision(self) -> str:
        return self.flags.precision if self.flags else self.params.get("trt.precision", "")

    @property
    def strongly_typed(self) -> bool:
        if self.flags is not None:
            return self.flags.strongly_typed
        return self.params.get("trt.strongly_typed", "False").lower() == "true"

    @property
    def pins(self) -> int:
        if self.flags is not None:
            return len(self.flags.layer_precisions) + len(self.flags.layer_output_types)
        return sum(0 if self.params.get(k, "-") in _NO_OVERRIDE else
                   len([p for p in self.params[k].split(",") if p])
                   for k in ("trt.layer_precisions", "trt.layer_output_types"))

    @property
    def is_fp32_reference(self) -> bool:
        """FINISHED, measured, fp32 without per-layer overrides: the accuracy baseline."""
        return (self.status == "FINISHED" and self.metric("wer") is not None
                and not self.dry_run and self.precision == "fp32" and self.pins == 0)


# --- reading ---------------------------------------------------------------------------

def _flags(tags: Mapping[str, str], params: Mapping[str, str]) -> FlagSet | None:
    """The flag set the job ran: the JSON it tagged, else (older runs) its trt.* params;
    None for a job whose flags TensorRT rejected (its FAILED run has the raw params)."""
    raw = tags.get(tag.FLAGS)
    try:
        if raw:
            return FlagSet.from_mapping(json.loads(raw))
        return _flags_from_params(params)
    except (SweepError, ValueError, TypeError):
        return None


def _flags_from_params(params: Mapping[str, str]) -> FlagSet | None:
    fields = FlagSet.__dataclass_fields__
    values: dict[str, Any] = {}
    for name, f in fields.items():
        text = params.get(f"trt.{name}")
        if text is None:
            continue
        default = f.default
        if name in ("layer_precisions", "layer_output_types", "extra"):
            values[name] = {} if text in _NO_OVERRIDE else dict(
                part.rsplit(":", 1) for part in text.split(",") if part)
        elif isinstance(default, bool):
            values[name] = text.lower() == "true"
        elif isinstance(default, int):
            values[name] = int(text)
        elif isinstance(default, float):
            values[name] = float(text)
        else:
            values[name] = text
    return FlagSet.from_mapping(values) if values else None


def _job_num(params: Mapping[str, str]) -> int:
    try:
        return int(params.get("job.num", ""))
    except ValueError:
        return 1 << 30  # a job without a number goes last, not first


def _started(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def engine_artifact(client: Any, run_id: str) -> str | None:
    """The engine file a run logged (``engine/model.plan`` or ``engine/model.onnx``)."""
    names = {Path(f.path).name: f.path for f in client.list_artifacts(run_id, "engine")}
    return next((names[n] for n in ENGINE_FILES if n in names), None)


def from_run(client: Any, run: Any, *, sweep_key: str | None = None,
             with_engine: bool = True, originals: dict[str, Any] | None = None) -> JobRecord:
    """A job's record from its MLflow run. ``sweep_key``: the reading sweep's key, to tell a
    resumption of this sweep from reuse across sweeps (default: the run's own parent's)."""
    tags = dict(run.data.tags)
    params = dict(run.data.params)
    measured = None
    source_id = tags.get(tag.RESUMED_FROM)
    if source_id:
        original = (originals or {}).get(source_id)
        if original is None:
            try:
                original = client.get_run(source_id)
            except Exception:  # deleted: the copy's own figures are all there is
                original = None
        if original is not None:
            key = sweep_key if sweep_key is not None else tags.get(tag.SWEEP_KEY)
            measured = Measured(source_id, original.data.tags.get(tag.PARENT_RUN),
                                _started(original.info.start_time) or datetime.now(UTC),
                                bool(key) and original.data.tags.get(tag.SWEEP_KEY) == key)
    finished = run.info.status == "FINISHED"
    artifacts = source_id or run.info.run_id
    return JobRecord(
        run_id=run.info.run_id, label=run.info.run_name or run.info.run_id[:8],
        status=run.info.status, job_num=_job_num(params), metrics=dict(run.data.metrics),
        params=params, tags=tags, flags=_flags(tags, params),
        parent_id=tags.get(tag.PARENT_RUN), started=_started(run.info.start_time),
        engine_artifact=engine_artifact(client, artifacts) if finished and with_engine
        else None,
        measured=measured)


def sweep_records(client: Any, experiment_id: str, parent_id: str, *,
                  with_engine: bool = True) -> list[JobRecord]:
    """The job runs of one sweep, in job order; a run whose worker died and whose job Ray ran
    again is the retry's, counted once."""
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`{tag.PARENT_RUN}` = '{parent_id}'",
                              max_results=5000)
    parent_key = None
    try:
        parent_key = client.get_run(parent_id).data.tags.get(tag.SWEEP_KEY)
    except Exception:
        parent_key = None
    records = [from_run(client, r, sweep_key=parent_key, with_engine=with_engine) for r in runs
               if r.data.tags.get(tag.KIND, "job") == "job" and tag.RETRIED_BY not in r.data.tags]
    # job.num is a string param: sorted as a number, or job 10 would come before job 2.
    return sorted(records, key=lambda r: (r.job_num, r.label, r.run_id))


def job_record(client: Any, run_id: str) -> JobRecord:
    """One job run by id (serve, promote); a MlflowException passes through."""
    return from_run(client, client.get_run(run_id))


# --- per-utterance errors (the paired difference of two jobs' WER) ------------------------

@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors and reference words per utterance id, from a job's transcripts.csv."""

    errors: Mapping[str, float]
    words: Mapping[str, float]


def utterance_errors(client: Any, record: JobRecord) -> UtteranceErrors | None:
    """Score the job's transcripts.csv per utterance (the same normalisation and alignment as
    its WER); None when it has none (failed, dry run, logged before transcripts were)."""
    import os

    from sweep.evaluate.metrics import utterance_word_errors

    # MLflow's download bars would interleave the sweep's table in its log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if record.status != "FINISHED" or record.dry_run:
        return None
    with tempfile.TemporaryDirectory(prefix="trt-sweep-transcripts-") as tmp:
        try:
            path = Path(client.download_artifacts(record.artifact_run, "transcripts.csv", tmp))
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except Exception:  # no such artifact, or the store cannot serve it
            return None
    ids = [r["id"] for r in rows]
    errors, words = utterance_word_errors([r["reference"] for r in rows],
                                          [r["hypothesis"] for r in rows])
    return UtteranceErrors(dict(zip(ids, errors.tolist(), strict=True)),
                           dict(zip(ids, words.tolist(), strict=True)))
