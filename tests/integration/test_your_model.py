"""docs/your-model.md runs as written: its config folder (the yaml blocks, with the demo
model and a NeMo-style copy of demo_tiny in place of T-one's files) and its commands, the
preflights and the first sweep, from a folder outside the repository."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.cli import ExitCode
from sweep.tracking import tags as tag
from tests.support.paths import DEMO, ROOT
from tests.support.tracking import experiment_id

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "your-model.md"


def doc_files() -> dict[str, str]:
    """The page's config files: yaml blocks whose first line names the file."""
    blocks = re.findall(r"```yaml\n# (tone-conf/\S+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in blocks}


def doc_commands() -> list[str]:
    section = DOC.read_text().split("## Check, then sweep", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def nemo_copy(source: Path, target: Path, limit: int) -> None:
    """A dataset in NeMo's layout: manifest.json beside audio/, lines naming audio/x.wav."""
    (target / "audio").mkdir(parents=True)
    rows = [json.loads(line) for line in
            (source / "tarred_audio_manifest.json").read_text().splitlines()[:limit]]
    for row in rows:
        shutil.copy(source / row["audio_filepath"], target / "audio")
        row["audio_filepath"] = f"audio/{row['audio_filepath']}"
    (target / "manifest.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """Where a user runs the page's commands: tone-conf/ as written, paths swapped for
    the demo's."""
    shutil.copy(DEMO / "demo_monolithic_fp16.onnx", tmp_path / "model.onnx")
    nemo_copy(DEMO / "data" / "demo_tiny", tmp_path / "data" / "calls", limit=3)
    nemo_copy(DEMO / "data" / "demo_calib", tmp_path / "data" / "calls_calib", limit=4)
    # T-one's values in the page -> the demo's, which stands in for T-one here.
    values: dict[str, dict[str, object]] = {
        "model": {"onnx_path": str(tmp_path / "model.onnx"), "chunk_ms": 400},
        "dataset": {"base_path": str(tmp_path / "data")},
        "decoder": {"kenlm_path": str(DEMO / "lm_3gram.arpa")}}
    files = doc_files()
    assert sorted(files) == ["tone-conf/dataset/calls.yaml", "tone-conf/decoder/tone_beam.yaml",
                             "tone-conf/model/tone.yaml"]
    for name, body in files.items():
        config = yaml.safe_load(body)
        group = name.split("/")[1]
        for key, value in values[group].items():
            assert key in config, f"{name} no longer sets {key}"
            config[key] = value
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return tmp_path


def run(command: str, cwd: Path, *extra: str, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    assert argv[:1] == ["python"], command
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed one
    return subprocess.run([sys.executable, *argv[1:], *extra], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_page_s_preflights_and_first_sweep_run_as_written(user_folder: Path) -> None:
    commands = doc_commands()
    assert [c.split()[:3] for c in commands] == [
        ["python", "-m", "sweep.preflight"], ["python", "-m", "sweep.preflight"],
        ["python", "-m", "sweep"], ["python", "-m", "sweep"],
        ["python", "-m", "sweep.doctor"]], commands
    modelopt = importlib.util.find_spec("modelopt") is not None
    for command in commands[:2]:
        done = run(command, user_folder)
        out = done.stdout + done.stderr
        print(f"$ {command}\n{out}")
        assert "one zero chunk ran as declared" in out, out
        assert re.search(r"^ok   dataset calls: .*calls/manifest.json: 3 utterances", out,
                         re.M), out
        failed = [line for line in out.splitlines() if line.startswith("FAIL")]
        if modelopt:
            assert done.returncode == ExitCode.OK and not failed, out
        else:  # the precision stage is optional: only ModelOpt may be missing
            assert all(line.startswith("FAIL ModelOpt") for line in failed), out
    second = run(commands[1], user_folder).stdout
    assert "ok   calibration set calls_calib: 4 utterances" in second
    assert "ok   KenLM for decoder=beam" in second

    # The first sweep: one job, the export as it is (its store in ./mlruns of the folder).
    done = run(commands[2], user_folder, f"builder.cache_dir={user_folder / 'cache'}",
               timeout=600)
    print(f"$ {commands[2]}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{user_folder / 'mlruns' / 'mlflow.db'}")
    (job,) = client.search_runs([experiment_id(client)],
                                f"tags.`{tag.KIND}` = 'job'")
    assert job.info.status == "FINISHED"
    assert job.data.params["model.name"] == "tone"
    assert job.data.params["dataset.manifest"] == "manifest.json"
    assert 0.0 <= job.data.metrics["wer"] < 0.5  # the demo model hears its own test audio

    # The doctor, with the same options: the same model, test set and store (its run lands
    # in the sweep's ./mlruns), the flag set the sweep built (strongly typed).
    done = run(commands[4], user_folder, "--quiet", timeout=600)
    print(f"$ {commands[4]} (exit {done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    assert done.returncode in (ExitCode.OK, ExitCode.DIFFERS), done.stderr[-3000:]
    assert "deploying tone (local, flag set typed-o3," in done.stderr
    (doctor,) = client.search_runs([experiment_id(client, "trt-sweep-doctor")])
    report = (Path(client.download_artifacts(doctor.info.run_id, "report.md",
                                             str(user_folder / "dl")))
              .read_text(encoding="utf-8"))
    first = json.loads((user_folder / "data" / "calls" / "manifest.json")
                       .read_text(encoding="utf-8").splitlines()[0])
    assert Path(first["audio_filepath"]).stem in report, report
