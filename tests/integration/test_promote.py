"""python -m sweep.promote against real MLflow stores: runs written the way a sweep writes
them (tags, params, metrics, artifacts), a real registry, a real Triton model repository
on disk; and once end to end after a real sweep, with the installed repository served by
a real tritonserver."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweep.promote.cli import main
from sweep.promote.install import MANIFEST
from sweep.tracking import tags as tag
from tests.support.paths import ROOT
from tests.support.sweep import run_sweep, sweep_command

pytestmark = pytest.mark.integration

DEVICE = "cpu:x86_64"
BUILDER = "emulate-0.1.0+ort1.32.0"
CONFIG = '''# Rendered by trt-sweep for flag set {label}.
name: "model"
backend: "python"
max_batch_size: 16
'''


@dataclass
class Job:
    """One job run as sweep/job.py records it."""

    label: str
    precision: str = "fp16"
    wer: float | None = 0.10
    p99: float | None = 10.0
    status: str = "FINISHED"
    device: str = DEVICE
    builder_version: str = BUILDER
    strongly_typed: bool = False
    record_sha: bool = True  # the engine_sha256 tag the sweep is asked to log

    @property
    def engine(self) -> bytes:
        return f"engine of {self.label}".encode() * 100


@dataclass
class Store:
    uri: str
    client: MlflowClient
    root: Path

    def sweep(self, name: str, jobs: list[Job]) -> str:
        """A finished sweep in experiment ``name``; returns the parent run id."""
        artifacts = self.root / "artifacts" / name
        artifacts.mkdir(parents=True)
        exp = self.client.create_experiment(name, artifact_location=artifacts.as_uri())
        parent = self.client.create_run(exp, run_name="sweep 12-00-00",
                                        tags={tag.KIND: "sweep", "device": DEVICE})
        parent_id = parent.info.run_id
        for num, j in enumerate(jobs):
            self._job(exp, parent_id, num, j)
        self.client.set_terminated(parent_id, "FINISHED")
        return parent_id

    def _job(self, exp: str, parent_id: str, num: int, j: Job) -> None:
        c = self.client
        digest = hashlib.sha256(j.label.encode()).hexdigest()[:12]
        tags = {tag.KIND: "job", "mlflow.parentRunId": parent_id, "device": j.device,
                "builder": "emulate", "builder_version": j.builder_version, "server": "local",
                "model": "demo_monolithic", "dataset": "demo_tiny", "flags_digest": digest,
                "engine_hash": digest * 2}
        if j.record_sha:
            tags["engine_sha256"] = hashlib.sha256(j.engine).hexdigest()
        run = c.create_run(exp, run_name=j.label, tags=tags).info.run_id
        for key, value in {"job.num": num, "trt.precision": j.precision,
                           "trt.strongly_typed": j.strongly_typed, "trt.layer_precisions": "-",
                           "trt.layer_output_types": "-", "trt.opt_level": 3}.items():
            c.log_param(run, key, str(value))
        if j.status != "FINISHED":
            c.set_tag(run, "error", "BuildError: the builder ran out of memory")
            c.set_terminated(run, j.status)
            return
        metrics = {"wer": j.wer, "cer": None if j.wer is None else j.wer / 2,
                   "latency_p50_ms": None if j.p99 is None else j.p99 / 2,
                   "latency_p99_ms": j.p99, "throughput_chunks_s": 1000.0 / (j.p99 or 100),
                   "build_seconds": 1.0}
        for key, value in metrics.items():
            if value is not None:
                c.log_metric(run, key, value)
        files = self.root / "files" / run
        (files / "engine").mkdir(parents=True)
        (files / "engine" / "model.onnx").write_bytes(j.engine)
        (files / "engine" / "build.log").write_text("built\n")
        (files / "engine" / "flags.json").write_text(json.dumps({"label": j.label}))
        (files / "model_repository" / "model").mkdir(parents=True)
        (files / "model_repository" / "model" / "config.pbtxt").write_text(
            CONFIG.format(label=j.label))
        (files / "transcripts.csv").write_text("id,reference,hypothesis\n")
        c.log_artifacts(run, str(files))
        c.set_terminated(run, "FINISHED")

    def run_of(self, parent_id: str, label: str) -> Any:
        exp = self.client.get_run(parent_id).info.experiment_id
        (run,) = self.client.search_runs([exp], f"attributes.run_name = '{label}'")
        return run

    def versions(self, name: str) -> list[Any]:
        return self.client.search_model_versions(f"name = '{name}'")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("promote-store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()  # creates the schema once for the module
    return Store(uri, client, root)


def promote(store: Store, capsys: pytest.CaptureFixture[str], *args: str
            ) -> tuple[int, str, str]:
    code = main(["--tracking-uri", store.uri, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> dict[str, str]:
    """Table rows of the dry-run output, by flag-set label."""
    return {line.split("│")[2].strip(): line for line in out.splitlines()
            if line.count("│") > 3}


# --- selection on real runs --------------------------------------------------------------

def test_dry_run_chooses_within_budget_and_explains_every_rejection(store, capsys):
    store.sweep("choose", [
        Job("fp32-o3", "fp32", wer=0.100, p99=30),
        Job("fp16-o3", wer=0.104, p99=12),
        Job("bf16-o3", "bf16", wer=0.106, p99=8),  # 0.6 points over fp32
        Job("fp16-o5", wer=0.100, p99=None),  # died before the latency figures
        Job("fp16-o0", status="FAILED"),
        Job("fp16-gpu", wer=0.100, p99=1, device="gpu:0"),
        Job("fp16-oldtrt", wer=0.100, p99=2, builder_version="emulate-0.0.9"),
    ])
    code, out, err = promote(store, capsys, "--experiment", "choose", "--dry-run")
    assert code == 0, err
    rows = _rows(out)
    assert "recommended" in rows["fp16-o3"] and "qualifies" in rows["fp32-o3"]
    assert "WER 10.60 % over the budget 10.50 %" in rows["bf16-o3"]
    assert "no latency_p99_ms metric" in rows["fp16-o5"]
    assert "status FAILED (BuildError: the builder ran out of memory)" in rows["fp16-o0"]
    assert "device gpu:0 is not cpu:x86_64" in rows["fp16-gpu"]
    assert "builder emulate-0.0.9 is not emulate-0.1.0+ort1.32.0" in rows["fp16-oldtrt"]
    assert "WER ≤ 10.50 % (fp32 reference 10.00 % + 0.5 points)" in out
    assert "choice: fp16-o3" in out and "dry run: nothing registered" in out
    assert store.versions("trt-sweep-demo_monolithic") == []


def test_objective_budget_and_target_device_are_options(store, capsys):
    parent = store.sweep("options", [
        Job("fp32-o3", "fp32", wer=0.100, p99=30),
        Job("bf16-o3", "bf16", wer=0.106, p99=8),
        Job("fp16-gpu", wer=0.100, p99=1, device="gpu:0"),
    ])
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--max-wer-delta", "1")
    assert code == 0 and "choice: bf16-o3" in out
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--max-wer", "10.2", "--objective", "throughput_chunks_s:max")
    assert code == 0 and "choice: fp32-o3" in out and "WER ≤ 10.20 % (--max-wer)" in out
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--device", "gpu:0")
    assert code == 0 and "choice: fp16-gpu" in out
    assert "device cpu:x86_64 is not gpu:0" in _rows(out)["fp32-o3"]


def test_ties_are_broken_by_wer_then_job_order(store, capsys):
    store.sweep("ties", [
        Job("fp32-o3", "fp32", wer=0.100, p99=30),
        Job("fp16-a", wer=0.103, p99=10),
        Job("fp16-b", wer=0.101, p99=10),  # same p99, lower WER: wins
        Job("fp16-c", wer=0.101, p99=10),  # same p99 and WER, later job
    ])
    for _ in range(2):  # the store's order never matters
        code, out, _ = promote(store, capsys, "--experiment", "ties", "--dry-run")
        assert code == 0
        ranks = {label: row.split("│")[1].strip() for label, row in _rows(out).items()}
        assert ranks == {"fp16-b": "1", "fp16-c": "2", "fp16-a": "3", "fp32-o3": "4"}


def test_nothing_qualifies_is_refused_with_every_reason(store, capsys):
    store.sweep("none", [
        Job("fp32-o3", "fp32", wer=0.100, p99=None),
        Job("fp16-o3", wer=0.200, p99=5),
        Job("bf16-o3", "bf16", status="FAILED"),
    ])
    code, _, err = promote(store, capsys, "--experiment", "none")
    assert code == 2
    assert "no job of the sweep meets the constraints" in err
    assert "fp32-o3" in err and "no latency_p99_ms metric" in err
    assert "fp16-o3" in err and "WER 20.00 % over the budget 10.50 %" in err
    assert "bf16-o3" in err and "status FAILED" in err
    assert store.versions("trt-sweep-demo_monolithic") == []


def test_a_strongly_typed_fp32_job_is_the_reference_when_there_is_no_other(store, capsys):
    # A TensorRT 11 sweep has nothing but strongly typed jobs.
    parent = store.sweep("typed", [Job("fp16-o3", wer=0.1), Job("fp32-typed", "fp32",
                                                               wer=0.09,
                                                               strongly_typed=True)])
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run")
    assert code == 0 and "fp32 strongly typed reference 9.00 %" in out


def test_a_sweep_without_fp32_reference_needs_an_explicit_budget(store, capsys):
    parent = store.sweep("noref", [Job("fp16-o3", wer=0.1), Job("bf16-o3", "bf16")])
    code, _, err = promote(store, capsys, "--parent-run-id", parent, "--dry-run")
    assert code == 2 and "no FINISHED fp32 reference" in err
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--max-wer", "15", "--device", DEVICE, "--builder-version", BUILDER)
    assert code == 0 and "choice: fp16-o3" in out


def test_no_sweep_found(store, capsys, tmp_path):
    code = main(["--tracking-uri", f"sqlite:///{tmp_path}/absent.db"])
    err = capsys.readouterr().err
    assert code == 2 and "no sweep found" in err and not (tmp_path / "absent.db").exists()
    code, _, err = promote(store, capsys, "--experiment", "no-such-experiment")
    assert code == 2 and "no experiment 'no-such-experiment'" in err
    job_run = store.run_of(store.sweep("notparent", [Job("fp32-o3", "fp32")]), "fp32-o3")
    code, _, err = promote(store, capsys, "--parent-run-id", job_run.info.run_id)
    assert code == 2 and "not a sweep's parent run" in err
    code, _, err = promote(store, capsys, "--parent-run-id", "0" * 32)
    assert code == 2 and "no sweep found" in err


# --- registering, installing, rolling back --------------------------------------------------

def test_promote_registers_installs_and_rolls_back(store, capsys, tmp_path):
    parent = store.sweep("deploy", [Job("fp32-o3", "fp32", wer=0.100, p99=30),
                                    Job("fp16-o3", wer=0.103, p99=10)])
    repo = tmp_path / "production"
    repo.mkdir()
    base = ["--parent-run-id", parent, "--name", "asr-deploy", "--repository-root", str(repo),
            "--model-name", "asr"]
    code, out, err = promote(store, capsys, *base)
    assert code == 0, err
    assert "installed" in out and "alias 'champion' -> asr-deploy version 1" in out
    code, out, err = promote(store, capsys, *base, "--objective", "wer")
    assert code == 0, err

    folder = repo / "asr"
    assert sorted(p.name for p in folder.iterdir()) == [".trt-sweep.lock", "1", "2",
                                                        "config.pbtxt"]
    fp16, fp32 = (store.run_of(parent, label) for label in ("fp16-o3", "fp32-o3"))
    for number, run in ((1, fp16), (2, fp32)):
        files = {p.name for p in (folder / str(number)).iterdir()}
        assert files == {"model.onnx", "model.py", "batched.py", MANIFEST,
                         "config.pbtxt.trt-sweep"}
        manifest = json.loads((folder / str(number) / MANIFEST).read_text())
        assert manifest["source_run_id"] == run.info.run_id
        assert manifest["engine_sha256"] == run.data.tags["engine_sha256"]
        assert manifest["registered_version"] == str(number)
    config = (folder / "config.pbtxt").read_text()
    assert 'name: "asr"' in config and "fp32-o3" in config  # Triton's name = the folder's

    client = store.client
    champion = client.get_model_version_by_alias("asr-deploy", "champion")
    assert str(champion.version) == "2" and champion.run_id == fp32.info.run_id
    assert champion.tags["engine_sha256"] == fp32.data.tags["engine_sha256"]
    assert champion.tags["metric.wer"] == "0.1" and champion.tags["flags_label"] == "fp32-o3"
    assert champion.tags["triton.version"] == "2"
    assert json.loads(champion.tags["flags"])["precision"] == "fp32"

    # The same choice again: already live, nothing added.
    code, out, _ = promote(store, capsys, *base, "--objective", "wer")
    assert code == 0 and "already in production" in out
    assert len(store.versions("asr-deploy")) == 2

    code, out, err = promote(store, capsys, "--rollback", "--repository-root", str(repo),
                             "--model-name", "asr")
    assert code == 0, err
    assert not (folder / "2").exists() and (folder / "1" / "model.onnx").exists()
    assert "fp16-o3" in (folder / "config.pbtxt").read_text()
    assert str(client.get_model_version_by_alias("asr-deploy", "champion").version) == "1"
    assert tag.ROLLED_BACK in client.get_model_version("asr-deploy", "2").tags

    code, _, err = promote(store, capsys, "--rollback", "--repository-root", str(repo),
                           "--model-name", "asr")
    assert code == 2 and "only version" in err and (folder / "1").exists()


def test_rollback_never_points_the_alias_at_another_stores_version(store, capsys, tmp_path):
    """Two stores promote into one repository: both number their first version 1, so the
    folder left after a rollback must be matched by run id and hash, not by number."""
    other_root = tmp_path / "other-store"
    other_uri = f"sqlite:///{other_root}/mlflow.db"
    other_root.mkdir()
    other = Store(other_uri, MlflowClient(tracking_uri=other_uri, registry_uri=other_uri),
                  other_root)
    repo = tmp_path / "production"
    repo.mkdir()
    target = ["--name", "asr-two", "--repository-root", str(repo), "--model-name", "asr"]
    first = store.sweep("two-stores", [Job("fp32-a", "fp32")])
    assert promote(store, capsys, "--parent-run-id", first, *target)[0] == 0
    second = other.sweep("two-stores", [Job("fp32-b", "fp32")])
    assert promote(other, capsys, "--parent-run-id", second, *target)[0] == 0
    assert (repo / "asr" / "2").exists()

    code, out, err = promote(other, capsys, "--rollback", "--repository-root", str(repo),
                             "--model-name", "asr")
    assert code == 0, err
    assert "alias 'champion' of asr-two removed" in out
    assert "champion" not in other.client.get_registered_model("asr-two").aliases
    assert str(store.client.get_model_version_by_alias("asr-two", "champion").version) == "1"


def test_a_target_outside_the_repository_root_is_refused(store, capsys, tmp_path):
    parent = store.sweep("escape", [Job("fp32-o3", "fp32")])
    repo, outside = tmp_path / "production", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    (repo / "linked").symlink_to(outside)
    for name in ("../outside", "linked"):
        for extra in ([], ["--dry-run"]):
            code, _, err = promote(store, capsys, "--parent-run-id", parent, "--name",
                                   "asr-escape", "--repository-root", str(repo),
                                   "--model-name", name, *extra)
            assert code == 2 and "outside the repository root" in err, err
    assert list(outside.iterdir()) == []
    assert store.versions("asr-escape") == []


def test_a_tampered_engine_is_refused(store, capsys, tmp_path):
    parent = store.sweep("tamper", [Job("fp32-o3", "fp32")])
    run = store.run_of(parent, "fp32-o3")
    engine = Path(run.info.artifact_uri.removeprefix("file://")) / "engine" / "model.onnx"
    engine.write_bytes(engine.read_bytes() + b"\0")
    repo = tmp_path / "production"
    repo.mkdir()
    code, _, err = promote(store, capsys, "--parent-run-id", parent, "--name", "asr-tamper",
                           "--repository-root", str(repo), "--model-name", "asr")
    assert code == 2 and "changed after the job ran" in err
    assert run.data.tags["engine_sha256"] in err
    assert store.versions("asr-tamper") == [] and not (repo / "asr").exists()


@pytest.mark.parametrize("lost", ["folder", "config"])
def test_a_run_without_its_model_repository_artifacts_is_refused(store, capsys, tmp_path, lost):
    """Without its config.pbtxt a version would be installed that Triton serves with the
    previous version's config, or cannot load at all: promote stops before registering."""
    parent = store.sweep(f"noconfig-{lost}", [Job("fp32-o3", "fp32")])
    run = store.run_of(parent, "fp32-o3")
    artifacts = Path(run.info.artifact_uri.removeprefix("file://")) / "model_repository"
    if lost == "folder":
        shutil.rmtree(artifacts)
    else:
        (artifacts / "model" / "config.pbtxt").unlink()
    repo = tmp_path / "production"
    repo.mkdir()
    name = f"asr-noconfig-{lost}"
    code, _, err = promote(store, capsys, "--parent-run-id", parent, "--name", name,
                           "--repository-root", str(repo), "--model-name", "asr")
    assert code == 2, err
    assert f"run {run.info.run_id} has no model_repository/model/config.pbtxt artifact" in err
    assert "Re-run the job" in err and "nothing was registered or installed" in err
    assert store.versions(name) == [] and list(repo.iterdir()) == []


def test_an_installed_engine_that_changed_blocks_rollback_onto_it(store, capsys, tmp_path):
    parent = store.sweep("tamper-installed", [Job("fp32-o3", "fp32", p99=30),
                                              Job("fp16-o3", wer=0.1, p99=10)])
    repo = tmp_path / "production"
    repo.mkdir()
    base = ["--parent-run-id", parent, "--name", "asr-ti", "--repository-root", str(repo),
            "--model-name", "asr"]
    assert promote(store, capsys, *base)[0] == 0
    assert promote(store, capsys, *base, "--objective", "wer")[0] == 0
    (repo / "asr" / "1" / "model.onnx").write_bytes(b"not what was installed")
    code, _, err = promote(store, capsys, "--rollback", "--repository-root", str(repo),
                           "--model-name", "asr")
    assert code == 2 and "changed or damaged" in err
    assert (repo / "asr" / "2").exists()
    assert str(store.client.get_model_version_by_alias("asr-ti", "champion").version) == "2"


def test_runs_without_a_recorded_hash_are_hashed_at_registration(store, capsys):
    parent = store.sweep("nohash", [Job("fp32-o3", "fp32", record_sha=False)])
    code, out, err = promote(store, capsys, "--parent-run-id", parent, "--name", "asr-nohash")
    assert code == 0, err
    assert "no engine_sha256 recorded by the sweep" in out
    version = store.client.get_model_version_by_alias("asr-nohash", "champion")
    expected = hashlib.sha256(Job("fp32-o3").engine).hexdigest()
    assert version.tags["engine_sha256"] == expected


# --- end to end: a real sweep, a real promotion, a real Triton ------------------------------

def _promote_installed(cmd: list[str], root: Path) -> dict[str, Any]:
    """``python -m sweep.promote`` into a new repository root; the installed manifest."""
    root.mkdir()
    real = subprocess.run([*cmd, "--repository-root", str(root), "--model-name", "asr"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert real.returncode == 0, real.stderr
    return dict(json.loads((root / "asr" / "1" / MANIFEST).read_text()))


def test_real_sweep_then_promote_then_serve(tmp_path, demo_onnx):
    sweep = ["-m", "trt.precision=fp32,bf16", "dataset=demo_tiny", "dataset.limit=2"]
    proc = run_sweep(sweep, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "sweep.promote", "--tracking-uri", uri]
    dry = subprocess.run([*cmd, "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "promotion candidates" in dry.stdout and "recommended" in dry.stdout
    print(dry.stdout)  # the docs paste this output

    repo = tmp_path / "production"
    manifest = _promote_installed(cmd, repo)
    assert manifest["flags_label"] in dry.stdout.split("choice: ")[1]

    from tritonclient.grpc import InferenceServerClient

    from sweep.server.base import ModelRepository
    from sweep.server.local import LocalServer

    repository = ModelRepository(path=repo, entry_model="asr", models=("asr",), configs=())
    with LocalServer(cache_dir=str(tmp_path / "triton")).serving(
            repository, tmp_path / "triton.log") as endpoint:
        client = InferenceServerClient(endpoint.grpc_url)
        assert client.is_model_ready("asr", "1")

    # The same sweep again, as after an interruption: every job is resumed from its first
    # run and has no artifacts of its own. Promote picks from the new sweep and installs
    # the engine its original run logged.
    again = run_sweep(sweep, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("skipped, the identical configuration") == 2
    resumed = subprocess.run([*cmd, "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "no engine artifact" not in resumed.stdout, resumed.stdout
    first_sweep = dry.stdout.split("sweep ")[1].split()[0]
    assert resumed.stdout.split("sweep ")[1].split()[0] != first_sweep, resumed.stdout
    again_manifest = _promote_installed(cmd, tmp_path / "production-2")
    assert again_manifest["engine_sha256"] == manifest["engine_sha256"]
    assert again_manifest["flags_label"] == manifest["flags_label"]


# --- intervals: indistinguishable jobs and a clear winner -----------------------------------

def _with_intervals(store: Store, parent_id: str, metrics: dict[str, dict[str, float]]) -> None:
    """Log the confidence metrics a sweep logs (wer_ci_*, latency_p99_ms_min/max)."""
    for label, values in metrics.items():
        run = store.run_of(parent_id, label).info.run_id
        for key, value in values.items():
            store.client.log_metric(run, key, value)


def test_two_jobs_of_one_flag_set_are_indistinguishable(store, capsys):
    """The same flag set twice: latencies that differ by 10 % between two runs on a noisy
    host, ranges across repeats that overlap: no winner on the number alone."""
    parent = store.sweep("same-flags", [Job("fp32-o3", "fp32", wer=0.10, p99=20.0),
                                        Job("fp32-o3", "fp32", wer=0.10, p99=22.0)])
    runs = store.client.search_runs([store.client.get_run(parent).info.experiment_id])
    jobs = sorted((r for r in runs if r.data.tags.get(tag.KIND) == "job"),
                  key=lambda r: r.data.metrics["latency_p99_ms"])
    for run, (low, high) in zip(jobs, [(18.0, 23.0), (19.0, 24.0)], strict=True):
        for key, value in {"latency_p99_ms_min": low, "latency_p99_ms_max": high,
                           "wer_ci_low": 0.07, "wer_ci_high": 0.13}.items():
            store.client.log_metric(run.info.run_id, key, value)
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run")
    assert code == 0, out
    print(out)
    assert "indistinguishable" in out
    assert "[18.0, 23.0]" in out and "[19.0, 24.0]" in out and "[7.00, 13.00]" in out
    decision = out.split("decision: ")[1].splitlines()[0]
    assert "overlap; the simpler flag set fp32-o3" in decision


def test_a_clearly_worse_flag_set_loses_on_wer(store, capsys):
    """An injected WER gap: bf16 3 points worse with intervals that do not overlap; with
    --objective wer the fp32 job wins outright, and the intervals are in the table."""
    parent = store.sweep("wer-gap", [Job("fp32-o3", "fp32", wer=0.10, p99=20.0),
                                     Job("bf16-o3", "bf16", wer=0.13, p99=15.0)])
    _with_intervals(store, parent, {
        "fp32-o3": {"wer_ci_low": 0.09, "wer_ci_high": 0.11},
        "bf16-o3": {"wer_ci_low": 0.12, "wer_ci_high": 0.14}})
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--objective", "wer", "--max-wer-delta", "5")
    assert code == 0, out
    print(out)
    assert "indistinguishable" not in out
    assert "choice: fp32-o3" in out
    assert "fp32-o3 (" in out.split("decision: ")[1] and " wins: " in out
    assert "[9.00, 11.00]" in out and "[12.00, 14.00]" in out
    # Overlapping intervals: the same gap no longer decides; the simpler flag set wins.
    parent2 = store.sweep("wer-noise", [Job("fp32-o3", "fp32", wer=0.11, p99=20.0),
                                        Job("bf16-o3", "bf16", wer=0.10, p99=15.0)])
    _with_intervals(store, parent2, {
        "fp32-o3": {"wer_ci_low": 0.08, "wer_ci_high": 0.14},
        "bf16-o3": {"wer_ci_low": 0.07, "wer_ci_high": 0.13}})
    code, out, _ = promote(store, capsys, "--parent-run-id", parent2, "--dry-run",
                           "--objective", "wer")
    assert code == 0, out
    assert "indistinguishable" in out and "choice: fp32-o3" in out


def test_runs_of_different_datasets_are_never_compared(store, capsys):
    parent = store.sweep("two-datasets", [Job("fp32-o3", "fp32"), Job("fp16-o3")])
    run = store.run_of(parent, "fp16-o3").info.run_id
    store.client.set_tag(run, "dataset", "demo_test")
    code, _, err = promote(store, capsys, "--parent-run-id", parent, "--dry-run")
    assert code == 2 and "different datasets or model interfaces" in err
    code, out, _ = promote(store, capsys, "--parent-run-id", parent, "--dry-run",
                           "--dataset", "demo_tiny")
    assert code == 0 and "choice: fp32-o3" in out


# --- an ensemble: the whole serving unit, promoted and rolled back --------------------------

def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "")
                  for p in root.rglob("*") if not p.name.startswith(".trt-sweep")
                  and "__pycache__" not in p.parts)  # Triton's python backend writes these


def test_an_ensemble_is_promoted_and_rolled_back_as_one_unit(tmp_path, demo_onnx):
    """Two sweeps of the preprocessing -> model ensemble (fp32; fp32 without TF32, another
    engine), each promoted into one production repository, then rolled back: the repository
    before, after each promotion and after rollback, each state served by Triton."""
    from tritonclient.grpc import InferenceServerClient

    from sweep.server.base import ModelRepository
    from sweep.server.local import LocalServer

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "sweep.promote", "--tracking-uri", uri]
    repo = tmp_path / "production"
    repo.mkdir()
    listings = {"before": _listing(repo)}
    name = "asr"

    def serve_check(expected_members: list[str]) -> None:
        models = tuple(sorted(p.name for p in repo.iterdir() if p.is_dir()))
        repository = ModelRepository(path=repo, entry_model=name, models=models, configs=())
        with LocalServer(cache_dir=str(tmp_path / "triton")).serving(
                repository, tmp_path / "triton.log") as endpoint:
            client = InferenceServerClient(endpoint.grpc_url)
            assert client.is_model_ready(name)
            config = client.get_model_config(name, as_json=True)["config"]
            steps = [s["model_name"] for s in config["ensemble_scheduling"]["step"]]
            assert sorted(steps) == sorted(expected_members)
            for member in steps:
                assert client.is_model_ready(member, "1")

    for n, extra in enumerate([[], ["trt.tf32=false"]], start=1):
        # Two sweeps, one store: the second promotion is another engine of the same model.
        sweep = sweep_command(["-m", "model=demo_skip_preprocessor", "trt.precision=fp32",
                               "dataset=demo_tiny", "dataset.limit=2", *extra], tmp_path,
                              sweep_dir=tmp_path / f"multirun{n}")
        proc = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        real = subprocess.run([*cmd, "--repository-root", str(repo), "--model-name", name],
                              cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert real.returncode == 0, real.stdout + real.stderr
        assert f"installed the serving unit {name} version {n}" in real.stdout, real.stdout
        listings[f"after promotion {n}"] = _listing(repo)
        serve_check([f"{name}-model-v{n}", f"{name}-preprocessing-v{n}"])
    back = subprocess.run([*cmd, "--rollback", "--repository-root", str(repo),
                           "--model-name", name], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert back.returncode == 0, back.stdout + back.stderr
    listings["after rollback"] = _listing(repo)
    report = "\n".join(f"--- {state}:\n" + "\n".join(files) for state, files in listings.items())
    out_dir = os.environ.get("TRT_SWEEP_SCREENSHOT_DIR")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "ensemble_promotion.txt").write_text(report + "\n")
    print(report)
    assert listings["after rollback"] == listings["after promotion 1"]
    assert not any("-v2" in f for f in listings["after rollback"])
    serve_check([f"{name}-model-v1", f"{name}-preprocessing-v1"])
