"""What a search leaves behind: the flag-set preset it writes, ``probes.csv``, and its MLflow
runs (a parent per search, a child per probe)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep.engine import Engine
from sweep.flags import FlagSet
from sweep.precision_search.search import Probe
from sweep.tracking import tags as tag
from sweep.tracking.runs import JobRun, environment_tags, job_run
from sweep.tracking.store import Store


def flag_set_yaml(flags: FlagSet, header: Sequence[str]) -> str:
    """A preset of the ``trt`` config group (``python -m sweep trt=NAME``)."""
    import yaml

    body: dict[str, Any] = flags.as_dict()
    for key in ("extra", "layer_output_types"):
        if not body[key]:
            del body[key]
    lines = [f"# {h}" if h else "#" for h in header]
    lines += ["defaults:", "  - default", "  - _self_", ""]
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def write_probes_csv(probes: Sequence[Probe], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["probe", "phase", "pinned_nodes", "patterns", "wer", "cer",
                         "frame_flips", "passed", "build_seconds", "eval_seconds",
                         "cached", "flags_digest", "run_id"])
        for p in probes:
            writer.writerow([p.n, p.phase, p.pinned, len(p.flags.layer_precisions),
                             f"{p.score.wer:.6f}", f"{p.score.cer:.6f}",
                             f"{p.score.frame_flips:.6f}", int(p.passed),
                             f"{p.score.build_seconds:.3f}", f"{p.score.eval_seconds:.3f}",
                             int(p.score.cached), p.flags.digest, p.run_id or ""])


# -- MLflow ----------------------------------------------------------------------------------

class SearchRuns:
    """The parent run of a search and a child run per probe."""

    def __init__(self, store: Store, name: str, params: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        self.store = store
        self.client = MlflowClient(store.uri)
        run = self.client.create_run(store.experiment_id, run_name=name,
                                     tags={tag.KIND: "precision_search",
                                           **environment_tags()})
        self.run_id = run.info.run_id
        JobRun(self.run_id, self.client).params(params)

    def probe(self, probe: Probe, engine: Engine) -> str:
        tags = {tag.KIND: "probe", "flags_digest": probe.flags.digest,
                "engine_hash": engine.path.parent.name,
                "engine_cached": str(engine.cached).lower(), "probe.phase": probe.phase}
        with job_run(self.store, f"probe {probe.n}: {probe.pinned} pinned",
                           self.run_id, tags) as job:
            job.params({"probe.n": probe.n, "probe.phase": probe.phase,
                        **probe.flags.params()})
            s = probe.score
            job.metrics({"wer": s.wer, "cer": s.cer, "frame_flips": s.frame_flips,
                         "passed": float(probe.passed), "pinned_nodes": float(probe.pinned),
                         "patterns": float(len(probe.flags.layer_precisions)),
                         "build_seconds": s.build_seconds, "eval_seconds": s.eval_seconds})
        return job.run_id

    def finish(self, status: str, metrics: dict[str, float] | None = None,
               files: Sequence[Path] = ()) -> None:
        try:
            if metrics:
                JobRun(self.run_id, self.client).metrics(metrics)
            for path in files:
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path))
        finally:
            self.client.set_terminated(self.run_id, status)
