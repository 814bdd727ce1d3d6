"""Resume: a job whose identical configuration already FINISHED in the same sweep command is
not run again.

Rerunning an interrupted sweep (same command line) starts a new parent run; every job
whose *identity* matches a FINISHED run of the same sweep command (the same *sweep key*:
the multirun's overrides) is skipped. A FINISHED identical job of *another* sweep is
measured again (its engine comes from the engine cache): its latency was measured at
another moment, under other load, and ranking it beside fresh numbers unmarked would mix
conditions. ``tracking.reuse_across_sweeps=true`` copies it anyway, and every report marks
the row with where and when it was measured. The skipped job
still gets its own child run under the new parent: FINISHED, tagged
``resumed_from=<original run id>``, with the original's metrics copied and a note saying
where they come from. Nothing is built, served or streamed. Why a run and not just a line
on the parent: the parent's table, CSV and Pareto plot are made from its children, and a
sweeper (Optuna) needs the job's objectives; a resumed sweep so ends with the same
summary as an uninterrupted one. Artifacts (engine, transcripts, logs) stay on the
original run, which the tag links to (promote installs a resumed job's engine from
there). ``+force=true`` runs every job again.

Identity: a digest of what decides a job's results:
* the flag set's digest (the engine's build configuration);
* the ONNX file's bytes (not its path);
* the evaluation data: each utterance's id, transcript and duration (not the folder);
* for a flag set realised in the graph (int8, fp8, AutoCast), the calibration audio's bytes:
  the scales are made from its samples, so a calibration set made again decides anew;
* the device the job runs on (latency is only comparable on the same hardware);
* the settings of the builder, server, model interface, dataset, eval and decoder groups,
  minus those that cannot change a result (:data:`IGNORED`: paths of caches, time-outs,
  ports, GPU indices that a launcher assigns per job).
Code changes are not part of it: after changing the sweep itself, rerun with +force=true.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sweep import keys

if TYPE_CHECKING:
    from sweep.tracking.runs import JobRun
    from sweep.tracking.store import Store

from sweep.tracking import tags as tag

IDENTITY_TAG = tag.IDENTITY
RESUMED_TAG = tag.RESUMED_FROM
NOTE_TAG = tag.NOTE  # shown as the run's description in the MLflow UI
# Overrides that say where a sweep writes or how long it waits, not what it measures: the
# same sweep moved to another folder or store is still the same sweep.
_KEY_IGNORED = ("hydra.", "tracking.", "builder.cache_dir", "builder.timeout_s",
                "server.grpc_port", "server.http_port", "+force", "force")

# The config groups (besides `trt`, which enters as the flag set's digest) whose settings
# make a job's results.
SETTING_GROUPS = ("builder", "server", "model", "dataset", "eval", "decoder")

# Settings that cannot change what a job measures.
IGNORED: Mapping[str, frozenset[str]] = {
    # gpus: which GPU index, assigned per job by a launcher (Ray); the device type is in
    # `device`. Caches and the Docker daemon's address: where, not what. Time-outs: how
    # long to wait, not the result.
    "builder": frozenset({"cache_dir", "cache_max_gb", "timing_cache_dir", "timeout_s",
                          "gpus", "docker_base_url"}),
    "server": frozenset({"ready_timeout_s", "stop_timeout_s", "grpc_port", "http_port", "gpus",
                         "cache_dir", "log_verbose", "keep_running", "docker_base_url",
                         "site_packages"}),
    # The ONNX bytes are hashed; the name is a label.
    "model": frozenset({"onnx_path", "name"}),
    # The utterances are hashed; the folder they lie in is not a result. out_of_alphabet
    # either refuses a dataset or lets it be scored as before: never two results.
    "dataset": frozenset({"base_path", "out_of_alphabet"}),
    "eval": frozenset({"request_timeout_s"}),
    # Decoder processes: same transcripts, sooner.
    "decoder": frozenset({"workers"}),
}


def relevant_settings(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The settings that enter the identity (``settings``: group -> plain mapping)."""
    return {group: {k: v for k, v in sorted(settings.get(group, {}).items())
                    if k not in IGNORED.get(group, frozenset())}
            for group in SETTING_GROUPS}


def job_identity(*, flags_digest: str, onnx_digest: str, data_digest: str, device: str,
                 settings: Mapping[str, Mapping[str, Any]],
                 calibration_digest: str | None = None) -> str:
    """A stable digest (24 hex digits) of everything that decides a job's results: the
    digests of its inputs and the settings that can change a result (``settings``: group
    -> plain mapping, filtered by :func:`relevant_settings`)."""
    return keys.job_identity(flags_digest=flags_digest, onnx_digest=onnx_digest,
                             data_digest=data_digest, device=device,
                             settings=relevant_settings(settings),
                             calibration_digest=calibration_digest)


def sweep_key(overrides: Iterable[str]) -> str:
    """The sweep command a job belongs to: a digest (16 hex digits) of the multirun's
    overrides as typed (``trt.opt_level=0,5``), sorted, without the ones that only say
    where or how long (:data:`_KEY_IGNORED`)."""
    return keys.sweep_key([o for o in overrides if not o.lstrip("~+").startswith(_KEY_IGNORED)])


def find_finished(store: Store, identity: str, sweep_key: str | None = None) -> str | None:
    """The FINISHED run of ``store``'s experiment with this identity, or None; with
    ``sweep_key``, only runs of that sweep command (None: any run, reuse across sweeps).

    The earliest original run wins over runs that were themselves resumed, so every
    ``resumed_from`` points at the run that measured; a resumed copy is returned only when
    its original is gone (deleted runs are not searched).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    # The identity is hex, so quoting it into the filter cannot inject anything.
    for value in (identity, sweep_key or ""):
        if not all(c in "0123456789abcdef" for c in value):
            raise ValueError(f"not a job identity or sweep key: {value!r}")
    query = f"tags.`{IDENTITY_TAG}` = '{identity}' and attributes.status = 'FINISHED'"
    if sweep_key:
        query += f" and tags.`{tag.SWEEP_KEY}` = '{sweep_key}'"
    runs = client.search_runs([store.experiment_id], filter_string=query,
                              order_by=["attributes.start_time ASC"], max_results=100)
    # A FINISHED job always has its objectives; anything else is not a result to reuse.
    usable = [r for r in runs if "wer" in r.data.metrics and "latency_p99_ms" in r.data.metrics]
    originals = [r for r in usable if RESUMED_TAG not in r.data.tags]
    chosen = originals or usable
    return chosen[0].info.run_id if chosen else None


def adopt(store: Store, source_run_id: str, job: JobRun) -> dict[str, float]:
    """Make ``job`` the resumed copy of ``source_run_id``: its metrics, engine tags and a
    ``resumed_from`` tag; return the metrics (the sweeper's objectives among them)."""
    from mlflow.tracking import MlflowClient

    source = MlflowClient(store.uri).get_run(source_run_id)
    metrics = {k: float(v) for k, v in source.data.metrics.items() if not math.isnan(v)}
    job.metrics(metrics)
    # What promote checks and registers the original's engine by.
    carried = {k: v for k, v in source.data.tags.items()
               if k in (tag.ENGINE_HASH, tag.BUILDER_VERSION, tag.ENGINE_SHA256,
                        tag.LOGGED_MODEL, tag.DATASET_DIGEST)}
    job.tags({**carried, RESUMED_TAG: source_run_id,
              NOTE_TAG: f"Not run again: the identical configuration FINISHED in run "
                        f"{source_run_id} (metrics copied from it; its artifacts stay "
                        "there). Rerun with +force=true to measure it anew."})
    return metrics
