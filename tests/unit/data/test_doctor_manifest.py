"""The doctor takes a manifest by path, whatever its name (NeMo's ``manifest.json``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sweep.doctor.cli import _utterances, load_model, parser
from tests.support.paths import DEMO

TINY = DEMO / "data" / "demo_tiny"


def test_a_manifest_given_by_path_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "calls"
    (folder / "audio").mkdir(parents=True)
    lines = (TINY / "tarred_audio_manifest.json").read_text(encoding="utf-8").splitlines()[:3]
    for wav in sorted(TINY.glob("*.wav"))[:3]:
        shutil.copy(wav, folder / "audio" / wav.name)
    # NeMo's layout: manifest.json beside an audio/ folder that the lines name.
    (folder / "manifest.json").write_text(
        "\n".join(line.replace('"test_s7', '"audio/test_s7') for line in lines) + "\n",
        encoding="utf-8")
    args = parser().parse_args(["--model", "demo_monolithic", "--dataset",
                                str(folder / "manifest.json"), "--limit", "2"])
    utterances = _utterances(args, load_model("demo_monolithic"))
    assert [u.audio_path for u in utterances] == [
        folder / "audio" / "test_s7_000000.wav", folder / "audio" / "test_s7_000001.wav"]


def test_a_dataset_folder_still_works() -> None:
    args = parser().parse_args(["--dataset", str(TINY), "--limit", "3"])
    assert len(_utterances(args, load_model("demo_monolithic"))) == 3
