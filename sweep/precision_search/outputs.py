"""What a search leaves behind: the flag-set preset it writes, ``probes.csv``, the plot of
WER against the nodes kept in float, and its MLflow runs (a parent per search, a child per
probe and, for the ranked search, one per ranking round)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.engine import Engine
from sweep.flags import FlagSet
from sweep.precision_search.search import Probe

if TYPE_CHECKING:
    from sweep.precision_search.ranked import Round, Step
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
    """The parent run of a search and a child run per probe.

    ``resume_id``: the parent of an interrupted search (from its history), reopened so the
    probes of every session sit under one parent."""

    def __init__(self, store: Store, name: str, params: dict[str, Any],
                 resume_id: str | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.store = store
        self.client = MlflowClient(store.uri)
        self.resumed = False
        if resume_id is not None:
            try:
                self.client.get_run(resume_id)
                # This process owns the parent now: with the old owner tag, the next
                # sweep's orphan check would end the reopened run as KILLED.
                owner = environment_tags().get(tag.OWNER)
                if owner is not None:
                    self.client.set_tag(resume_id, tag.OWNER, owner)
                self.client.update_run(resume_id, status="RUNNING")
                self.run_id = resume_id
                self.resumed = True
            except MlflowException:
                resume_id = None  # another store, or the run was deleted: start a parent
        if resume_id is None:
            run = self.client.create_run(store.experiment_id, run_name=name,
                                         tags={tag.KIND: "precision_search",
                                               **environment_tags()})
            self.run_id = run.info.run_id
            JobRun(self.run_id, self.client).params(params)
        for key, value in (tags or {}).items():  # mutable: a resumed search may change them
            self.client.set_tag(self.run_id, key, value)

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

    def step(self, step: Step, flags: FlagSet) -> str:
        """A full-set probe of the ranked search."""
        r = step.result
        tags = {tag.KIND: "probe", "flags_digest": flags.digest, "probe.phase": step.phase}
        if step.group:
            tags["probe.group"] = step.group
        with job_run(self.store, f"probe {step.n}: {step.phase}"
                     f"{' ' + step.group if step.group else ''} ({len(step.keeps)} in float)",
                     self.run_id, tags) as job:
            job.params({"probe.n": step.n, "probe.phase": step.phase,
                        "probe.group": step.group or "-", **flags.params()})
            metrics = {"wer": r.wer, "cer": r.cer, "frame_flips": r.frame_flips, "kl": r.kl,
                       "passed": float(step.passed), "accepted": float(step.accepted),
                       "nodes_in_float": float(len(step.keeps)),
                       "eval_seconds": r.seconds}
            if step.gain is not None:
                metrics["ranking_gain"] = step.gain
            job.metrics(metrics)
        return job.run_id

    def ranking(self, rnd: Round, workdir: Path) -> str:
        """A ranking round: its table as an artifact, the top scores as metrics."""
        path = workdir / f"ranking_{rnd.n}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["rank", "group", "gain", "kl", "flips", "rewired"])
            for i, s in enumerate(rnd.scores, 1):
                writer.writerow([i, s.group, f"{s.gain:.6f}", f"{s.kl:.6f}", s.flips,
                                 s.rewired])
        with job_run(self.store, f"ranking {rnd.n} ({len(rnd.keeps)} in float)", self.run_id,
                     {tag.KIND: "ranking"}) as job:
            job.params({"ranking.n": rnd.n, "ranking.subset": len(rnd.subset),
                        "ranking.groups": len(rnd.scores)})
            job.metrics({"subset_kl": rnd.base_kl,
                         "top_gain": rnd.scores[0].gain if rnd.scores else 0.0})
            job.artifact(path)
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


def write_steps_csv(steps: Sequence[Step], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["probe", "phase", "group", "ranking_round", "ranking_gain",
                         "nodes_in_float", "wer", "cer", "frame_flips", "kl", "passed",
                         "accepted", "eval_seconds", "replayed", "run_id"])
        for s in steps:
            r = s.result
            writer.writerow([s.n, s.phase, s.group or "", s.ranking_round or "",
                             "" if s.gain is None else f"{s.gain:.6f}", len(s.keeps),
                             f"{r.wer:.6f}", f"{r.cer:.6f}", f"{r.frame_flips:.6f}",
                             f"{r.kl:.6f}", int(s.passed), int(s.accepted),
                             f"{r.seconds:.2f}", int(s.replayed), s.run_id or ""])


def plot_wer_against_kept(steps: Sequence[Step], wer_bound: float, out_png: Path,
                          title: str, max_frame_flips: float | None = None) -> Path:
    """WER (percent) of every probe against the nodes it keeps in float, and below it the
    frames off fp32's decision: the accepted path as a line, rejected reverts as crosses,
    fp32 and the budgets as horizontal lines."""
    from sweep.tracking.plots import plt, save_figure

    fig, (ax, flips) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 2]})
    baseline = next(s for s in steps if s.phase == "baseline")
    path = [s for s in steps if s.phase != "baseline" and s.accepted]
    rejected = [s for s in steps if s.phase == "revert" and not s.accepted]
    for axis, value, unit in ((ax, lambda s: s.result.wer * 100, "WER, %"),
                              (flips, lambda s: s.result.frame_flips * 100,
                               "frames off fp32, %")):
        axis.plot([len(s.keeps) for s in path], [value(s) for s in path], "o-",
                  color="#c44e52", label="kept (accepted steps)")
        if rejected:
            axis.plot([len(s.keeps) for s in rejected], [value(s) for s in rejected], "x",
                      color="#8c8c8c", label="reverted, did not help")
        axis.set_ylabel(unit)
    ax.axhline(baseline.result.wer * 100, color="#4c72b0", ls="--", label="fp32")
    ax.axhline(wer_bound * 100, color="#55a868", ls=":", label="WER budget")
    if max_frame_flips is not None:
        flips.axhline(max_frame_flips * 100, color="#55a868", ls=":", label="frame budget")
    flips.set_xlabel("nodes kept in float")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, out_png)
