"""Runs a dead sweep left RUNNING, closed with the right reason, and what the store refused
put back into them.

When the tracking store stops accepting writes mid-sweep, the running job keeps its figures
in ``<job folder>/results.json`` (:func:`sweep.tracking.failures.keep_results`, naming its
run) and the sweep stops; neither the job's run nor the sweep's parent run can be closed
then. The next sweep on that store (:func:`close_orphaned_runs`) finds
such runs RUNNING with their process gone and, before calling them killed, looks for what
they kept:

- a job run whose folder (tag ``trt-sweep.job_dir``) holds its results.json gets the kept
  metrics, a ``trt-sweep.recovered_from`` tag and a description saying when the store
  refused and where the figures came from; it ends FINISHED when they are a whole
  measurement (:data:`~sweep.tracking.failures.MEASURED`), FAILED with that reason
  otherwise;
- a sweep's parent run whose folder holds its jobs' results.json ends FAILED, naming them.

Anything else a dead process left RUNNING ends KILLED, as before (SIGKILL, out of memory).

``python -m sweep.tracking.recover FOLDER`` (the store: the sweep's own config options,
``--config-dir``, ``tracking.uri=...``, or ``--tracking-uri``) does the same for the runs
of the results.json files under FOLDER (a job's or a sweep's folder), without waiting for
the next sweep; runs of a sweep still running are left to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep import loader
from sweep.errors import ConfigError
from sweep.tracking import tags as tag
from sweep.tracking.failures import MEASURED, RESULTS, KeptResults, read_kept
from sweep.tracking.runs import JobRun, owner_alive, process_identity
from sweep.tracking.store import Store


@dataclass(frozen=True)
class Closed:
    """A run a dead sweep left RUNNING, as it was closed."""

    run_id: str
    status: str  # FINISHED, FAILED or KILLED
    reason: str
    # The results.json the run's figures were read from (a job's), or that its jobs kept
    # (a sweep's parent); None: nothing was kept, the run was KILLED.
    kept: tuple[Path, ...] = ()

    def line(self) -> str:
        return f"run {self.run_id} {self.status}: {self.reason}"


def killed_reason(pid: str, host: str) -> str:
    return (f"the sweep process that ran this (pid {pid} on {host}) ended without closing "
            "it: killed (SIGKILL, out of memory) or the machine restarted")


def close_orphan(client: Any, run: Any, pid: str, host: str) -> Closed:
    """Close one run whose process is gone: from what its job (or its sweep's jobs) kept
    when the store refused writes, else KILLED with the generic reason."""
    kind = run.data.tags.get(tag.KIND)
    if kind == "job":
        kept = kept_for_job(client, run)
        if kept is not None:
            return recover_job(client, run, kept)
    elif kind == "sweep":
        kept_jobs = kept_for_sweep(run)
        if kept_jobs:
            return close_parent(client, run, kept_jobs)
    reason = killed_reason(pid, host)
    client.set_tag(run.info.run_id, tag.ERROR, reason)
    client.set_terminated(run.info.run_id, "KILLED")
    return Closed(run.info.run_id, "KILLED", reason)


def kept_for_job(client: Any, run: Any) -> KeptResults | None:
    """The results.json that names this run: in the job's folder (tagged at its start),
    else in a folder of its sweep (a run logged before the folder was tagged)."""
    candidates: list[Path] = []
    folder = run.data.tags.get(tag.JOB_DIR)
    if folder:
        candidates.append(Path(folder) / RESULTS)
    parent_id = run.data.tags.get(tag.PARENT_RUN)
    if parent_id:
        try:
            sweep_dir = client.get_run(parent_id).data.tags.get(tag.SWEEP_DIR)
        except Exception:  # the parent was deleted: the job's own folder is all there is
            sweep_dir = None
        if sweep_dir:
            candidates += sorted(Path(sweep_dir).glob(f"*/{RESULTS}"))
    for path in candidates:
        kept = read_kept(path)
        # Only a record that names this run: a folder's results.json of another run (or a
        # user's own file of that name) never closes it.
        if kept is not None and kept.run_id == run.info.run_id:
            return kept
    return None


def kept_for_sweep(run: Any) -> list[KeptResults]:
    """The results.json files this sweep's jobs kept (each names its parent run)."""
    sweep_dir = run.data.tags.get(tag.SWEEP_DIR)
    if not sweep_dir:
        return []
    found = (read_kept(p) for p in sorted(Path(sweep_dir).glob(f"*/{RESULTS}")))
    return [k for k in found if k is not None and k.parent_run_id == run.info.run_id]


def recover_job(client: Any, run: Any, kept: KeptResults) -> Closed:
    """Log what ``kept`` holds to the job's run and close it: FINISHED for a whole
    measurement (the job's evaluation ended; only the store's writes failed), FAILED with
    the reason otherwise. Never KILLED: the process was not killed, the store refused."""
    from sweep.tracking import describe
    from sweep.tracking.records import from_run

    run_id = run.info.run_id
    tags = run.data.tags
    job = JobRun(run_id, client)
    # Linked as the job would have linked them: to its engine and to its test set.
    job.model_id = tags.get(tag.LOGGED_MODEL) or None
    if tags.get(tag.DATASET) and tags.get(tag.DATASET_DIGEST):
        job.dataset_ref = (tags[tag.DATASET], tags[tag.DATASET_DIGEST])
    job.metrics(kept.metrics)
    reason = f"the store refused writes at {kept.refused_at}; results recovered from {kept.path}"
    status = "FINISHED" if kept.complete else "FAILED"
    job.tags({tag.RECOVERED_FROM: str(kept.path)})
    if status == "FINISHED":
        record = from_run(client, client.get_run(run_id), with_engine=False)
        job.tags({tag.NOTE: f"{describe.job(record)}\n\n{reason}."})
    else:
        missing = [k for k in MEASURED if k not in kept.metrics]
        reason += (f"; not a whole measurement ({', '.join(missing) or 'a figure'} not "
                   f"measured): {kept.error or 'the job stopped before its evaluation ended'}")
        job.tags({tag.ERROR: reason, tag.NOTE: reason})
    if job.model_id:
        # The engine's record is a convenience; the run is the result.
        with suppress(Exception):
            job.finish_model("READY" if status == "FINISHED" else "FAILED")
    client.set_terminated(run_id, status)
    return Closed(run_id, status, reason, (kept.path,))


def close_parent(client: Any, run: Any, kept: list[KeptResults]) -> Closed:
    """End FAILED a sweep's parent run that the store left RUNNING, naming where its jobs'
    results were kept."""
    when = min(k.refused_at for k in kept)
    paths = tuple(k.path for k in kept)
    reason = (f"the store refused writes at {when}; job results kept in "
              + ", ".join(str(p) for p in paths))
    client.set_tag(run.info.run_id, tag.ERROR, reason)
    client.set_tag(run.info.run_id, tag.NOTE, f"**The sweep stopped**: {reason}.")
    client.set_terminated(run.info.run_id, "FAILED")
    return Closed(run.info.run_id, "FAILED", reason, paths)


def orphans_message(closed: list[Closed]) -> str:
    """What the next sweep says about the runs it closed, in one line."""
    killed = [c.run_id for c in closed if c.status == "KILLED"]
    parts = []
    if killed:
        parts.append(f"{len(killed)} run(s) left RUNNING by a sweep process that no longer "
                     "exists now end KILLED: " + ", ".join(killed))
    parts += [c.line() for c in closed if c.status != "KILLED"]
    return "; ".join(parts)


_ORPHANS_CHECKED: set[tuple[str, str]] = set()


def close_orphaned_runs(store: Store) -> list[Closed]:
    """Close the runs of this experiment left RUNNING by a process of this machine that no
    longer exists: nothing else would ever close them. A run whose job kept its results
    when the store stopped accepting writes gets them and ends FINISHED (a whole
    measurement) or FAILED, its sweep's parent FAILED naming them (``close_orphan``);
    the others end KILLED (SIGKILL, the OOM killer, a reboot).
    Runs of live processes (a sweep running beside this one) and of other hosts are left
    alone. Once per store and process; returns the runs it closed."""
    from mlflow.tracking import MlflowClient

    me = process_identity(os.getpid())
    key = (store.uri, store.experiment_id)
    if me is None or key in _ORPHANS_CHECKED:
        return []
    _ORPHANS_CHECKED.add(key)
    host = me.rsplit("/", 3)[0]
    client = MlflowClient(store.uri)
    closed = []
    for run in client.search_runs([store.experiment_id], "attributes.status = 'RUNNING'",
                                  max_results=1000):
        if owner_alive(run.data.tags.get(tag.OWNER, ""), host) is not False:
            continue  # still running, or another host's (it cannot be told from here)
        closed.append(close_orphan(client, run, run.data.tags[tag.OWNER].rsplit("/", 3)[2],
                                   host))
    return closed


# --- the command ---------------------------------------------------------------------------

def recover_folder(uri: str, folder: Path) -> list[Closed]:
    """Close the RUNNING runs named by the results.json files under ``folder`` (a job's
    folder or a sweep's), and their parents. A run that is not RUNNING is left as it is."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    def open_and_dead(run: Any) -> bool:
        # A sweep still running holds its runs open: they are its to close.
        return bool(run is not None and run.info.status == "RUNNING"
                    and not owner_alive(run.data.tags.get(tag.OWNER, "")))

    def get(run_id: str) -> Any:
        # A results.json of a run this store does not hold (another store's): not ours.
        try:
            return client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    client = MlflowClient(uri)
    files = [folder / RESULTS] if (folder / RESULTS).is_file() else sorted(
        folder.glob(f"*/{RESULTS}"))
    kept = [k for k in (read_kept(p) for p in files) if k is not None]
    closed: list[Closed] = []
    for record in kept:
        if record.run_id is None:
            continue
        run = get(record.run_id)
        if open_and_dead(run):
            closed.append(recover_job(client, run, record))
    for parent_id in sorted({k.parent_run_id for k in kept if k.parent_run_id}):
        parent = get(parent_id)
        if open_and_dead(parent):
            closed.append(close_parent(client, parent,
                                       [k for k in kept if k.parent_run_id == parent_id]))
    return closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.tracking.recover",
        description="Close the runs a sweep left RUNNING when the tracking store stopped "
                    "accepting writes, from the results.json its jobs kept (the next sweep "
                    "on the store does this by itself). Run it only once that sweep has "
                    "ended.")
    parser.add_argument("folder", type=Path, help="a job's folder or a sweep's folder")
    parser.add_argument("--tracking-uri",
                        help="the store the sweep logged to (default: tracking.uri of the "
                             "configuration below, as the sweep read it)")
    loader.add_config_options(parser)
    args = parser.parse_intermixed_args(argv)
    from sweep.tracking.store import redact

    if not args.folder.is_dir():
        print(f"trt-sweep: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        tracking = loader.load(loader.ConfigOptions.from_args(args), "recover").tracking
        uri = loader.tracking_uri(tracking, args.tracking_uri)
    except ConfigError as exc:
        print(f"trt-sweep: {exc}", file=sys.stderr)
        return 2
    try:
        closed = recover_folder(uri, args.folder)
    except Exception as exc:
        print(f"trt-sweep: {redact(str(exc)).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 1
    for c in closed:
        print(c.line())
    if not closed:
        print(f"no RUNNING run is named by a {RESULTS} under {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
