"""A reference holding words T-one cannot output ("в 2023 году"): refused before the first
job naming the line, the utterance and the words; with dataset.out_of_alphabet=drop scored
without them, the references altered counted and said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweep.cli import ExitCode
from tests.faults.conftest import Row, assert_clean, run_sweep
from tests.support.paths import DEMO

pytestmark = pytest.mark.integration

TINY = DEMO / "data" / "demo_tiny"
MANIFEST = "tarred_audio_manifest.json"
TEXT = "в 2023 году"


def _with_digits(root: Path) -> Path:
    """Two demo_tiny lines, the second's reference replaced by one holding digits."""
    folder = root / "digits"
    folder.mkdir(parents=True)
    rows = [json.loads(line) for line in (TINY / MANIFEST).read_text().splitlines()[:2]]
    for r in rows:
        shutil.copy(TINY / str(r["audio_filepath"]), folder)
    rows[1]["text"] = TEXT
    (folder / MANIFEST).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


def _args(root: Path) -> list[str]:
    return ["-m", "trt.precision=fp32,fp16", f"dataset.base_path={root}",
            "dataset.name=digits", "dataset.limit=null", "eval.streams=1"]


@pytest.mark.fault(f"a reference holding digits ('{TEXT}')",
                   "refused before the first job: exit 2 naming the line, the utterance and "
                   "'2023'; no run")
def test_a_reference_with_digits_is_refused_before_the_first_job(tmp_path: Path,
                                                                 row: Row) -> None:
    folder = _with_digits(tmp_path / "data")
    utterance = Path(json.loads((folder / MANIFEST).read_text().splitlines()[1])
                     ["audio_filepath"]).stem
    sweep = run_sweep(_args(tmp_path / "data"), tmp_path)
    assert sweep.proc.returncode == ExitCode.REFUSED, (sweep.proc.returncode,
                                                       sweep.stderr[-3000:])
    expected = (f"{folder / MANIFEST} line 2 ({utterance}): text '{TEXT}' holds '2023', "
                "which T-one's alphabet cannot output")
    assert expected in sweep.stderr, sweep.stderr[-3000:]
    assert sweep.jobs() == [] and sweep.parents() == []
    row.outcome(f"exit 2: '...line 2 ({utterance}): text '{TEXT}' holds '2023', which "
                "T-one's alphabet cannot output...'; no run")
    row.cleanup(assert_clean(sweep))


@pytest.mark.fault(f"the same reference ('{TEXT}') with dataset.out_of_alphabet=drop",
                   "scored without '2023': both jobs FINISHED, references_altered=1 logged "
                   "and said once a job")
def test_drop_scores_without_them_and_says_how_many(tmp_path: Path, warm_cache: Path,
                                                    row: Row) -> None:
    _with_digits(tmp_path / "data")
    sweep = run_sweep([*_args(tmp_path / "data"), "dataset.out_of_alphabet=drop"], tmp_path,
                      cache=warm_cache)
    assert sweep.proc.returncode == ExitCode.OK, sweep.stderr[-3000:]
    jobs = sweep.jobs()
    assert [r.info.status for r in jobs] == ["FINISHED", "FINISHED"]
    assert [r.data.metrics["references_altered"] for r in jobs] == [1.0, 1.0]
    said = "1 of 2 references hold words T-one cannot output (digits, Latin); scored " \
           "without them (dataset.out_of_alphabet=drop)"
    assert sweep.output.count(said) == 2, sweep.output[-3000:]  # once per job
    row.outcome(f"exit 0, both FINISHED, references_altered=1 on each run, '{said[:60]}...'")
    row.cleanup(assert_clean(sweep))
