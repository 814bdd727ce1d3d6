"""Resume: job identity (stable, sensitive to what matters only) and finding a FINISHED run
in a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep import keys
from sweep.data.manifest import Utterance
from sweep.tracking import resume
from sweep.tracking.runs import job_run
from sweep.tracking.store import Store, open_store

SETTINGS: dict[str, dict[str, object]] = {
    "builder": {"name": "emulate", "intra_op_threads": 1, "cache_dir": "/a", "timeout_s": 60.0,
                "gpus": "all"},
    "server": {"name": "local", "max_batch_size": 16, "grpc_port": None, "gpus": None},
    "model": {"name": "demo", "onnx_path": "/x/model.onnx", "chunk_ms": 400},
    "dataset": {"name": "demo_tiny", "base_path": "/data", "limit": 2},
    "eval": {"streams": 16, "request_timeout_s": 30.0},
    "decoder": {"name": "greedy", "workers": 2},
    "tracking": {"uri": "sqlite:///somewhere.db"},
}


def identity(**changes: object) -> str:
    base: dict = {"flags_digest": "abc", "onnx_digest": "0" * 64, "data_digest": "1" * 64,
                  "device": "cpu:x86_64", "settings": SETTINGS}
    return resume.job_identity(**{**base, **changes})


def changed(group: str, key: str, value: object) -> dict:
    return {**SETTINGS, group: {**SETTINGS[group], key: value}}


def test_identity_is_stable_and_ignores_what_cannot_change_a_result():
    same = identity()
    assert identity() == same and len(same) == 24
    reordered = {g: dict(reversed(list(v.items()))) for g, v in reversed(SETTINGS.items())}
    assert identity(settings=reordered) == same
    for group, key, value in [("builder", "cache_dir", "/elsewhere"), ("builder", "gpus", "1"),
                              ("server", "grpc_port", 8001), ("model", "onnx_path", "/y.onnx"),
                              ("dataset", "base_path", "/mnt"), ("decoder", "workers", 8),
                              ("eval", "request_timeout_s", 5.0),
                              ("tracking", "uri", "http://mlflow:5000")]:
        assert identity(settings=changed(group, key, value)) == same, (group, key)


def test_identity_changes_with_what_decides_a_result():
    same = identity()
    for change in [{"flags_digest": "abd"}, {"onnx_digest": "2" * 64},
                   {"data_digest": "3" * 64}, {"device": "gpu:H100"}]:
        assert identity(**change) != same, change
    for group, key, value in [("builder", "name", "trtexec"), ("server", "max_batch_size", 8),
                              ("model", "chunk_ms", 300), ("dataset", "limit", 3),
                              ("eval", "streams", 4), ("decoder", "name", "beam")]:
        assert identity(settings=changed(group, key, value)) != same, (group, key)


def test_utterances_digest_is_about_content_not_location():
    a = [Utterance("u1", Path("/a/u1.wav"), "привет", 1.5),
         Utterance("u2", Path("/a/u2.wav"), "мир", 2.0)]
    moved = [Utterance(u.id, Path("/b") / u.audio_path.name, u.text, u.duration) for u in a]
    assert keys.utterances_digest(a) == keys.utterances_digest(moved)
    assert keys.utterances_digest(a) != keys.utterances_digest(a[:1])
    edited = [a[0], Utterance("u2", a[1].audio_path, "мир!", 2.0)]
    assert keys.utterances_digest(a) != keys.utterances_digest(edited)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One SQLite store for the module: creating its schema takes seconds.
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def store(database: Path, request: pytest.FixtureRequest) -> Store:
    """A fresh experiment per test, in the module's store."""
    return open_store(f"sqlite:///{database}", request.node.name,
                            str(database.parent / "artifacts"), database.parent)


def finished_run(store: Store, ident: str, wer: float, status: str = "FINISHED",
                 tags: dict[str, str] | None = None) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store.uri)
    run = client.create_run(store.experiment_id,
                            tags={resume.IDENTITY_TAG: ident, **(tags or {})})
    client.log_metric(run.info.run_id, "wer", wer)
    client.log_metric(run.info.run_id, "latency_p99_ms", 12.5)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_find_finished_takes_only_finished_runs_of_that_identity(store):
    ident, other = identity(), identity(flags_digest="zzz")
    assert resume.find_finished(store, ident) is None
    finished_run(store, ident, 0.5, status="FAILED")
    finished_run(store, ident, 0.5, status="KILLED")
    finished_run(store, other, 0.1)
    assert resume.find_finished(store, ident) is None
    wanted = finished_run(store, ident, 0.2)
    assert resume.find_finished(store, ident) == wanted


def test_find_finished_prefers_the_original_over_resumed_copies(store):
    ident = identity()
    original = finished_run(store, ident, 0.2)
    finished_run(store, ident, 0.2, tags={resume.RESUMED_TAG: original})
    assert resume.find_finished(store, ident) == original


def test_find_finished_stays_within_the_experiment(store, tmp_path):
    ident = identity()
    finished_run(store, ident, 0.2)
    elsewhere = open_store(store.uri, f"{store.experiment}-other", str(tmp_path), tmp_path)
    assert resume.find_finished(elsewhere, ident) is None


def test_find_finished_refuses_a_non_identity(store):
    with pytest.raises(ValueError, match="not a job identity"):
        resume.find_finished(store, "x' or '1'='1")


def test_adopt_copies_metrics_and_links_the_original(store):
    from mlflow.tracking import MlflowClient

    ident = identity()
    original = finished_run(store, ident, 0.25, tags={"engine_hash": "e" * 24})
    with job_run(store, "fp16-o3", None, {resume.IDENTITY_TAG: ident}) as job:
        metrics = resume.adopt(store, original, job)
    assert metrics == {"wer": 0.25, "latency_p99_ms": 12.5}
    copy = MlflowClient(store.uri).get_run(job.run_id)
    assert copy.info.status == "FINISHED"
    assert copy.data.metrics == metrics
    assert copy.data.tags[resume.RESUMED_TAG] == original
    assert copy.data.tags["engine_hash"] == "e" * 24
    assert original in copy.data.tags[resume.NOTE_TAG]
    # The copy is found only as a fallback: the original stays the answer.
    assert resume.find_finished(store, ident) == original


def test_a_calibrated_job_is_identified_by_its_calibration_audio(tmp_path: Path) -> None:
    def calibration_set(sample: bytes, where: str = "calib") -> list[Utterance]:
        folder = tmp_path / where / sample.hex()
        folder.mkdir(parents=True)
        (folder / "a.wav").write_bytes(b"RIFF" + sample)
        return [Utterance(id="a", audio_path=folder / "a.wav", text="да", duration=1.0)]

    first = keys.calibration_digest(keys.audio_digests(calibration_set(b"\x01")))
    # Made again with other audio (same ids, transcripts and durations): a new identity,
    # so the int8 job is measured anew instead of copying the old scales' metrics.
    again = keys.calibration_digest(keys.audio_digests(calibration_set(b"\x02")))
    assert first != again
    moved = keys.audio_digests(calibration_set(b"\x01", "moved"))
    assert keys.calibration_digest(moved) == first  # not where
    assert identity(calibration_digest=first) != identity(calibration_digest=again)
    # Jobs without calibration keep the identities they had.
    assert identity(calibration_digest=None) == identity()
