"""A store refusing writes is told apart from the job's own failures that say the same words:
only what MLflow raised stops the sweep."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.errors import BuildError
from sweep.tracking.failures import keep_results, reason, store_refused


def test_mlflows_refusal_is_the_stores_and_a_full_engine_cache_is_not(tmp_path: Path):
    cause = OSError(errno.ENOSPC, "No space left on device")
    try:
        raise MlflowException("(sqlite3.OperationalError) attempt to write a readonly "
                              "database") from cause
    except MlflowException as exc:
        assert store_refused(exc)
        assert reason(exc).startswith("(sqlite3.OperationalError) attempt to write a readonly")
    cache = BuildError("no space left on the disk under the engine cache /tmp/x")
    cache.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert not store_refused(cache)
    assert not store_refused(RuntimeError("boom"))


def test_an_artifact_write_on_a_full_volume_passes_through_mlflow(tmp_path: Path,
                                                                  monkeypatch):
    import shutil

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp).info.run_id
    src = tmp_path / "f.txt"
    src.write_text("x")

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    for name in ("copy", "copy2", "copyfile", "copyfileobj"):
        monkeypatch.setattr(shutil, name, full)
    with pytest.raises(OSError) as exc:
        client.log_artifact(run, str(src))
    assert store_refused(exc.value)


def test_results_are_kept_atomically(tmp_path: Path):
    path = keep_results(tmp_path / "job", {"wer": 0.1, "status": "FAILED"})
    assert path.name == "results.json" and '"wer": 0.1' in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
