"""A training run stopped at its deadline and resumed ends where an uninterrupted one does.

The shipped model was trained over two GPU calls (demo/README.md, "Regenerating"); this
checks on the CPU, with a tiny model and the calibration set, that ``--resume`` carries on
with the same batches, augmentation, chunk choices and optimiser state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")

from demo import train  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "demo" / "assets" / "data" / "demo_calib"
STEPS = 6


def run(out: Path, *extra: str) -> None:
    args = ["--data", str(DATA), "--out", str(out), "--device", "cpu", "--workers", "0",
            "--batch-seconds", "8", "--steps", str(STEPS), "--warmup", "2", "--val-max", "2",
            "--val-fraction", "0.2", "--d-model", "32", "--layers", "1", *extra]
    assert train.main(args) == 0


def test_resume_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    run(tmp_path / "whole", "--max-minutes", "60")
    # A deadline already past stops the run after its first step, mid-epoch.
    run(tmp_path / "split", "--max-minutes", "1e-9")
    paused = torch.load(tmp_path / "split" / "resume.pt", weights_only=False)
    assert paused["step"] == 1 and paused["position"] == 1 and paused["epoch"] == 0
    run(tmp_path / "split", "--max-minutes", "60", "--resume",
        str(tmp_path / "split" / "resume.pt"))

    whole = torch.load(tmp_path / "whole" / "resume.pt", weights_only=False)
    split = torch.load(tmp_path / "split" / "resume.pt", weights_only=False)
    assert whole["step"] == split["step"] == STEPS
    for name, value in whole["state_dict"].items():
        torch.testing.assert_close(split["state_dict"][name], value, rtol=0, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_resume_refuses_another_model(tmp_path: Path) -> None:
    run(tmp_path / "a", "--max-minutes", "1e-9")
    with pytest.raises(SystemExit, match="d_model"):
        train.main(["--data", str(DATA), "--out", str(tmp_path / "a"), "--device", "cpu",
                    "--workers", "0", "--d-model", "64", "--layers", "1",
                    "--resume", str(tmp_path / "a" / "resume.pt")])
