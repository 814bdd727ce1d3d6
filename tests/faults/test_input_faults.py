"""Bad datasets and models are refused once, before the first job and before any MLflow
run (the preflight callback, exit 2): each manifest fault with one message naming the
file and the line, a missing ONNX with one message naming it however many jobs use it, a
model whose state is declared with the wrong size naming the tensor; a float WAV test set
is scored at its real scale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.cli import ExitCode
from tests.faults.conftest import Row, SweepProcess, assert_clean, run_sweep
from tests.support.models import tiny_monolithic_onnx
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
    _dataset(root, "nan_audio", [_json(good), _json({**second, "audio_filepath": "nan.wav"})])
    noisy = audio / 32768.0
    noisy[400] = np.nan
    sf.write(str(root / "nan_audio" / "nan.wav"), noisy, rate, subtype="FLOAT")
    _dataset(root, "punctuation_text", [_json({**good, "text": "..."}), _json(second)])
    _dataset(root, "empty_audio", [_json(good), _json({**second,
                                                        "audio_filepath": "empty.wav"})])
    sf.write(str(root / "empty_audio" / "empty.wav"), np.zeros(0, np.int16), rate)


CASES = {
    "missing_audio": "line 2: audio file {folder}/gone.wav does not exist",
    "malformed_json": "line 2: malformed JSON",
    "empty_text": "line 1: empty 'text'; every utterance needs a transcript",
    "non_utf8": "line 2: not valid UTF-8",
    "stereo": "line 1: audio {folder}/stereo.wav has 2 channels; it must be mono",
    "rate_16k": "line 2: audio {folder}/wide.wav has a sample rate of 16000 Hz; it must be "
                "resampled to 8 kHz",
    "nan_audio": "line 2: audio {folder}/nan.wav (FLOAT) has 1 non-finite sample(s) (NaN or "
                 "inf), the first at sample 400 (0.050 s)",
    "punctuation_text": "line 1: 'text' '...' is empty once normalised for scoring",
    "empty_audio": "line 2: audio {folder}/empty.wav has no samples (0 frames",
}


@pytest.fixture(scope="module")
def manifest_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepProcess, Path]:
    """One sweep over the broken datasets (a multirun over dataset.name)."""
    tmp = tmp_path_factory.mktemp("manifests")
    root = tmp / "data"
    broken_datasets(root)
    sweep = run_sweep(["-m", f"dataset.name={','.join(CASES)}", f"dataset.base_path={root}",
                       "dataset.limit=null"], tmp)
    assert sweep.proc.returncode == ExitCode.REFUSED, sweep.stderr[-3000:]
    return sweep, root


def refusals(sweep: SweepProcess) -> list[str]:
    """The failed preflight checks the sweep printed, one line each."""
    return [line for line in sweep.stderr.splitlines()
            if line.startswith("trt-sweep: preflight: FAIL ")]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.fault("manifest fault",
                   "refused before any job (exit 2): one line naming the file and the line")
def test_manifest_fault(manifest_sweep: tuple[SweepProcess, Path], case: str,
                        row: Row) -> None:
    sweep, root = manifest_sweep
    folder = root / case
    (line,) = [r for r in refusals(sweep) if r.startswith(
        f"trt-sweep: preflight: FAIL dataset {case}: ")]
    error = line.split(": ", 3)[3]
    assert error.startswith(f"{folder / MANIFEST} line "), error
    assert CASES[case].format(folder=folder) in error, error
    assert sweep.stderr.count(f"{folder / MANIFEST} line") == 1  # once, not once per job
    assert len(refusals(sweep)) == len(CASES)
    assert sweep.stderr.strip().splitlines()[-1].startswith(
        f"trt-sweep: {len(CASES)} preflight check(s) failed for the {len(CASES)} job(s)")
    assert sweep.runs() == [], "refused before any run was opened"
    assert "Traceback" not in sweep.stderr
    shown = error.replace(f"{folder / MANIFEST}", "<manifest>").replace(str(folder), "<dir>")
    row.outcome(f"exit 2, no run: '{shown[:120]}{'...' if len(shown) > 120 else ''}'")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("a missing ONNX in a 2-job multirun",
                   "refused before any job (exit 2): one error naming the file, no run")
def test_missing_onnx_is_refused_once(tmp_path: Path, row: Row) -> None:
    """It was found inside each job: one FAILED run per job, each repeating the error."""
    missing = tmp_path / "exported" / "model.onnx"
    sweep = run_sweep(["-m", f"model.onnx_path={missing}", "trt.precision=fp32,fp16",
                       "dataset=demo_tiny"], tmp_path)
    assert sweep.proc.returncode == ExitCode.REFUSED, sweep.stderr[-3000:]
    (line,) = refusals(sweep)
    assert line.startswith("trt-sweep: preflight: FAIL model demo_monolithic: "), line
    assert f"{missing} does not exist" in line, line
    assert sweep.output.count(str(missing)) == 1, sweep.output[-3000:]
    assert sweep.stderr.strip().splitlines()[-1] == (
        "trt-sweep: 1 preflight check(s) failed for the 2 job(s) of the sweep; no job was "
        "started (`python -m sweep.preflight` with the same overrides shows every check).")
    assert sweep.runs() == [] and sweep.parents() == [], "no MLflow run was opened"
    assert not (tmp_path / "sweep" / "0").exists(), "no job folder was made"
    row.outcome(f"exit 2, no run: '{line.replace(str(tmp_path), '<tmp>')[:150]}...'")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("float WAV test set (32-bit FLOAT copy of the int16 audio)",
                   "scored at its real scale: the same WER as the int16 original")
def test_float_wav_test_set(tmp_path: Path, warm_cache: Path, row: Row) -> None:
    """It was read as silence (libsndfile's int16 read does not rescale floats) and scored
    WER 1.0 with exit 0; the in-process reference read it the same way, so the frame
    disagreement stayed 0 too."""
    root = tmp_path / "data"
    good, second = _lines()
    _dataset(root, "tiny_int16", [_json(good), _json(second)])
    _dataset(root, "tiny_float", [_json(good), _json(second)])
    for wav in (root / "tiny_float").glob("*.wav"):
        samples, rate = sf.read(str(wav), dtype="float32")
        sf.write(str(wav), samples, rate, subtype="FLOAT")
        assert sf.info(str(wav)).subtype == "FLOAT"
    sweep = run_sweep(["-m", "dataset.name=tiny_int16,tiny_float", f"dataset.base_path={root}",
                       "dataset.limit=null"], tmp_path, cache=warm_cache)
    assert sweep.proc.returncode == ExitCode.OK, sweep.stderr[-3000:]
    runs = {r.data.params["dataset.name"]: r for r in sweep.jobs()}
    assert [r.info.status for r in runs.values()] == ["FINISHED", "FINISHED"]
    int16, float32 = (runs[n].data.metrics for n in ("tiny_int16", "tiny_float"))
    assert int16["wer"] < 0.5  # the demo model hears the original
    assert float32["wer"] == int16["wer"] and float32["cer"] == int16["cer"]
    assert float32["frame_disagreement"] == int16["frame_disagreement"]
    row.outcome(f"both FINISHED: WER {float32['wer']:.4f} (FLOAT) = {int16['wer']:.4f} "
                f"(PCM_16), CER {float32['cer']:.4f} = {int16['cer']:.4f}")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault("state tensor declared 1000 wide, the graph makes 105489",
                   "refused before any job (exit 2), naming the tensor and both shapes")
def test_wrong_state_size(tmp_path: Path, row: Row) -> None:
    """It passed every static check, was built, and the job died as SIGSEGV naming
    nothing."""
    onnx = tiny_monolithic_onnx(tmp_path / "wrong_state.onnx", state=1000, real_state=105489)
    sweep = run_sweep([f"model.onnx_path={onnx}", "dataset=demo_tiny"], tmp_path)
    assert sweep.proc.returncode == ExitCode.REFUSED, sweep.stderr[-3000:]
    assert "SIGSEGV" not in sweep.output
    (line,) = refusals(sweep)
    assert "'state_next' is declared (batch, 1000)" in line and "(1, 105489)" in line, line
    assert sweep.runs() == [], "refused before any run was opened"
    row.outcome(f"exit 2, no run: '...{line[line.index('output'):][:110]}...'")
    row.cleanup(assert_clean(sweep))
