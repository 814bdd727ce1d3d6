"""``python -m sweep.preflight`` checks a sweep's inputs before any job: the model (file,
tensor names, chunk, one zero chunk), the test set, the calibration set and ModelOpt for
flag sets realised in the graph, with the sweep's own config options (--config-dir)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sweep.cli import ExitCode
from sweep.loader import expand
from sweep.preflight.cli import main
from tests.support.models import tiny_monolithic_onnx


def _preflight(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (out.out + out.err).splitlines()


def _line(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert found, f"no line starting {start!r} in:\n" + "\n".join(lines)
    return found[0]


def _model_yaml(folder: Path, name: str, onnx: Path, chunk_ms: int = 400) -> Path:
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "model" / f"{name}.yaml").write_text(
        "defaults:\n  - model_schema\n  - _self_\n"
        f"name: {name}\nonnx_path: {onnx}\ncontract: monolithic\naudio_input: signal\n"
        "logprobs_output: logprobs\nstates:\n  - {input: state, output: state_next}\n"
        f"chunk_ms: {chunk_ms}\n")
    return folder


def test_sweep_overrides_expand_to_every_job() -> None:
    jobs = expand(["trt.precision=fp16,int8", "trt.opt_level=range(0,3)", "model.pad_ms=0"])
    assert len(jobs) == 6
    assert ["trt.precision=int8", "trt.opt_level=2", "model.pad_ms=0"] in jobs


def test_the_demo_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _preflight(capsys, "dataset=demo_tiny")
    assert "one zero chunk ran as declared" in _line(lines, "ok   model demo_monolithic")
    assert "8 utterances" in _line(lines, "ok   dataset demo_tiny")
    assert code == ExitCode.OK or any(line.startswith("FAIL local tritonserver")
                                      for line in lines)


def test_a_missing_onnx_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, lines = _preflight(capsys, "dataset=demo_tiny", f"model.onnx_path={tmp_path}/x.onnx")
    assert code == ExitCode.REFUSED
    assert f"{tmp_path}/x.onnx does not exist" in _line(lines, "FAIL model demo_monolithic")


def test_a_wrong_chunk_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _preflight(capsys, "dataset=demo_tiny", "model.chunk_ms=300")
    assert code == ExitCode.REFUSED
    line = _line(lines, "FAIL model demo_monolithic")
    assert "(3200, 1) samples per chunk" in line and "chunk_ms=300 means 2400" in line


def test_wrong_tensor_names_fail(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _preflight(capsys, "dataset=demo_tiny", "model.audio_input=audio_signal")
    assert code == ExitCode.REFUSED
    assert "Expected inputs ['audio_signal', 'state']" in _line(lines, "FAIL model")


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_own_model_from_a_config_dir_is_run_once(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, how: str) -> None:
    """A model yaml of one's own, found through --config-dir or hydra.searchpath, whose
    state is declared 1000 wide while the graph makes 105489: named before any build."""
    onnx = tiny_monolithic_onnx(tmp_path / "wrong.onnx", state=1000, real_state=105489)
    conf = _model_yaml(tmp_path / "conf", "mine", onnx)
    where = (["--config-dir", str(conf)] if how == "--config-dir"
             else [f"hydra.searchpath=[file://{conf}]"])
    code, lines = _preflight(capsys, *where, "model=mine", "dataset=demo_tiny")
    assert code == ExitCode.REFUSED
    line = _line(lines, "FAIL model mine")
    assert "'state_next' is declared (batch, 1000)" in line and "105489" in line


def test_typed_flag_sets_need_a_calibration_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _preflight(capsys, "-m", "dataset=demo_tiny", "trt.strongly_typed=true",
                             "trt.precision=fp32,int8", "dataset.calibration=no_such_set")
    assert code == ExitCode.REFUSED
    line = _line(lines, "FAIL calibration set no_such_set")
    assert "typed-int8" in line and "no_such_set does not exist" in line


def test_typed_flag_sets_need_modelopt(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelopt", None)  # import modelopt: ImportError
    monkeypatch.setitem(sys.modules, "modelopt.onnx", None)
    code, lines = _preflight(capsys, "dataset=demo_tiny", "trt.strongly_typed=true",
                             "trt.precision=fp16")
    assert code == ExitCode.REFUSED
    assert "typed-fp16" in _line(lines, "FAIL ModelOpt")
    # A flag set the builder types itself does not need it.
    code, lines = _preflight(capsys, "dataset=demo_tiny", "trt.precision=fp16")
    assert not any(line.startswith("FAIL ModelOpt") for line in lines)


def test_a_bad_test_set_fails_with_its_line(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    folder = tmp_path / "data" / "bad"
    folder.mkdir(parents=True)
    samples = np.zeros(4000)
    samples[10] = np.nan
    sf.write(str(folder / "a.wav"), samples, 8000, subtype="FLOAT")
    (folder / "tarred_audio_manifest.json").write_text(
        json.dumps({"audio_filepath": "a.wav", "text": "да"}) + "\n")
    code, lines = _preflight(capsys, "dataset=demo_tiny", "dataset.name=bad",
                             f"dataset.base_path={tmp_path / 'data'}")
    assert code == ExitCode.REFUSED
    line = _line(lines, "FAIL dataset bad")
    assert "tarred_audio_manifest.json line 1" in line and "non-finite" in line


def test_an_unknown_config_dir_is_refused(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    code, lines = _preflight(capsys, "--config-dir", str(tmp_path / "nope"))
    assert code == ExitCode.REFUSED and "no such folder" in "\n".join(lines)


