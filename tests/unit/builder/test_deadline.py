"""``builder.timeout_s`` for the in-process builder: the alarm ends the build wherever it lands."""

from __future__ import annotations

import time
from pathlib import Path

import onnx
import pytest

from sweep.builder import make_builder
from sweep.builder.deadline import Deadline
from sweep.errors import BuildError
from sweep.flags import FlagSet
from tests.support.paths import DEMO_ONNX


def test_an_alarm_inside_a_fallback_still_ends_the_build(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator wraps shape inference in ``except Exception`` (a custom op can defeat
    it). On a slow host the alarm landed there: the fallback took it for a failed inference
    and the build finished after its deadline. Shape inference is made slow here so that
    the alarm lands in it every time."""
    real = onnx.shape_inference.infer_shapes

    def slow_inference(*args: object, **kwargs: object) -> onnx.ModelProto:
        time.sleep(2.0)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", slow_inference)
    builder = Deadline(make_builder("emulate"), timeout_s=0.3)
    start = time.perf_counter()
    with pytest.raises(BuildError) as caught:
        builder.build(DEMO_ONNX, FlagSet(precision="fp32"), tmp_path)
    assert time.perf_counter() - start < 2.0, "the build ran past its alarm"
    assert "did not finish within builder.timeout_s=0.3 s" in str(caught.value)
    assert caught.value.log_path == tmp_path / "build.log"
    log = (tmp_path / "build.log").read_text()
    assert "FAILED: the build did not finish within builder.timeout_s=0.3 s" in log, log
    assert "shape inference failed" not in log, log
    assert not (tmp_path / "model.onnx").exists()


def test_a_build_within_its_deadline_is_left_alone(tmp_path: Path) -> None:
    engine = Deadline(make_builder("emulate"), timeout_s=600).build(
        DEMO_ONNX, FlagSet(precision="fp32"), tmp_path)
    assert engine.path.exists()
    assert "FAILED" not in engine.log_path.read_text()
