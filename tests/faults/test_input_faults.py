"""Bad datasets: each manifest fault fails its job with one message naming the file and the
line, before anything is built or served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.cli import ExitCode
from tests.faults.conftest import Row, SweepProcess, assert_clean, run_sweep
from tests.support.paths import DEMO

pytestmark = pytest.mark.integration

TINY = DEMO / "data" / "demo_tiny"
MANIFEST = "tarred_audio_manifest.json"


def _lines(n: int = 2) -> list[dict[str, object]]:
    return [json.loads(line) for line in (TINY / MANIFEST).read_text().splitlines()[:n]]


def _dataset(root: Path, name: str, lines: list[bytes]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for row in _lines():
        shutil.copy(TINY / str(row["audio_filepath"]), folder)
    (folder / MANIFEST).write_bytes(b"\n".join(lines) + b"\n")


def _json(row: dict[str, object]) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode()


def broken_datasets(root: Path) -> None:
    """One dataset per fault, each otherwise a valid copy of two demo_tiny lines."""
    good, second = _lines()
    _dataset(root, "missing_audio", [_json(good), _json({**second,
                                                          "audio_filepath": "gone.wav"})])
    _dataset(root, "malformed_json", [_json(good), _json(second)[:-10]])
    _dataset(root, "empty_text", [_json({**good, "text": "  "}), _json(second)])
    _dataset(root, "non_utf8", [_json(good),
                                _json({**second, "text": "PLACEHOLDER"}).replace(
                                    b"PLACEHOLDER", "привет".encode("cp1251"))])
    audio, rate = sf.read(str(TINY / str(good["audio_filepath"])), dtype="int16")
    _dataset(root, "stereo", [_json({**good, "audio_filepath": "stereo.wav"})])
    sf.write(str(root / "stereo" / "stereo.wav"), np.stack([audio, audio], axis=1), rate)
    _dataset(root, "rate_16k", [_json(good), _json({**second, "audio_filepath": "wide.wav"})])
    sf.write(str(root / "rate_16k" / "wide.wav"), np.repeat(audio, 2), 16000)


CASES = {
    "missing_audio": "line 2: audio file {folder}/gone.wav does not exist",
    "malformed_json": "line 2: malformed JSON",
    "empty_text": "line 1: empty 'text'; every utterance needs a transcript",
    "non_utf8": "line 2: not valid UTF-8",
    "stereo": "line 1: audio {folder}/stereo.wav has 2 channels; it must be mono",
    "rate_16k": "line 2: audio {folder}/wide.wav has a sample rate of 16000 Hz; it must be "
                "resampled to 8 kHz",
}


@pytest.fixture(scope="module")
def manifest_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepProcess, Path]:
    """One sweep over the six broken datasets (a multirun over dataset.name)."""
    tmp = tmp_path_factory.mktemp("manifests")
    root = tmp / "data"
    broken_datasets(root)
    sweep = run_sweep(["-m", f"dataset.name={','.join(CASES)}", f"dataset.base_path={root}",
                       "dataset.limit=null"], tmp)
    assert sweep.proc.returncode == ExitCode.ALL_JOBS_FAILED, sweep.stderr[-3000:]
    return sweep, root


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.fault("manifest fault", "FAILED run with one clear message and the line number")
def test_manifest_fault(manifest_sweep: tuple[SweepProcess, Path], case: str,
                        row: Row) -> None:
    sweep, root = manifest_sweep
    (run,) = [r for r in sweep.jobs() if r.data.params["dataset.name"] == case]
    error = run.data.tags["error"]
    folder = root / case
    assert run.info.status == "FAILED"
    assert error.startswith(f"{folder / MANIFEST} line "), error
    assert CASES[case].format(folder=folder) in error, error
    assert "\n" not in error.strip()  # one message, not a traceback
    assert "engine_hash" not in run.data.tags  # found before building
    shown = error.replace(f"{folder / MANIFEST}", "<manifest>").replace(str(folder), "<dir>")
    row.outcome(f"FAILED: '{shown[:120]}{'...' if len(shown) > 120 else ''}'")
    row.cleanup(assert_clean(sweep))
