"""Content keys (sweep/keys.py): one definition each, the same values as before they were
gathered there (a user's caches and resumable runs stay valid), and a job that hashes its
ONNX once, however many caches its phases consult."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweep import keys
from sweep.data.manifest import Utterance
from sweep.flags import FlagSet
from tests.support.models import tiny_monolithic_onnx
from tests.support.paths import DEMO, ROOT

SWEEP = ROOT / "sweep"
# Hashing outside sweep/keys.py and its primitive (sweep/infra/files.py), each with why.
HASHING_ELSEWHERE = {
    # The bytes of an installed engine, hashed as they are copied (not read twice).
    "sweep/promote/install.py",
    # The search's own resume identity (sweep/precision_search is being reworked apart).
    "sweep/precision_search/cli.py", "sweep/precision_search/ranked.py",
}


SETTINGS: dict[str, dict[str, Any]] = {
    "builder": {"name": "emulate", "cache_dir": "/a"}, "model": {"chunk_ms": 400},
    "dataset": {"name": "demo_tiny", "base_path": "/data"}}


def _sha(blob: str | bytes) -> str:
    return hashlib.sha256(blob.encode() if isinstance(blob, str) else blob).hexdigest()


def _audio(tmp_path: Path) -> list[Utterance]:
    out = []
    for n, sample in enumerate((b"\x01", b"\x02")):
        path = tmp_path / f"u{n}.wav"
        path.write_bytes(b"RIFF" + sample)
        out.append(Utterance(f"u{n}", path, "да", 1.25 + n))
    return out


def test_the_keys_keep_the_values_they_had(tmp_path: Path) -> None:
    """Each key computed as its old definition (inlined here, as it stood in its module)
    computed it: an engine cache, a typed ONNX, calibration pairs, an fp32 reference, a
    resumed job and MLflow's dataset digest made before stay found."""
    from sweep.config import model_interface
    from sweep.tracking import resume

    onnx = tiny_monolithic_onnx(tmp_path / "m.onnx")
    utterances = _audio(tmp_path)
    digest = _sha(onnx.read_bytes())
    assert keys.file_digest(onnx) == digest
    flags = FlagSet.from_mapping({"precision": "fp16"})
    # builder/cache.py
    assert keys.engine_key(digest, flags.digest, "emulate", "v1", "cpu") == _sha(json.dumps(
        [digest, flags.digest, "emulate", "v1", "cpu"]))[:24]
    # precision/calibration.py
    from omegaconf import OmegaConf

    from sweep.config import ModelConfig

    model = model_interface(OmegaConf.to_object(OmegaConf.merge(  # type: ignore[arg-type]
        OmegaConf.structured(ModelConfig), {"name": "m", "onnx_path": str(onnx),
                                            "states": [{"input": "state",
                                                        "output": "state_next"}]})))
    audio = keys.audio_digests(utterances)
    assert keys.calibration_pairs_key(digest, model, audio) == _sha(json.dumps(
        [digest, model.chunk_ms, model.pad_ms, model.left_context_samples, model.scale,
         [(u.id, _sha(u.audio_path.read_bytes())) for u in utterances]]))[:24]
    # evaluate/agreement.py
    assert keys.reference_key(digest, model, utterances) == _sha(json.dumps(
        [digest, model.name, model.chunk_ms, model.pad_ms,
         [(u.id, str(u.audio_path)) for u in utterances]]))[:24]
    # precision/realise.py
    ask = {"precision": "fp16", "recipe": 4, "modelopt": "x"}
    assert keys.typed_key(ask, digest) == _sha(json.dumps({**ask, "source": digest},
                                                           sort_keys=True))[:24]
    # tracking/resume.py
    h = hashlib.sha256()
    for u in utterances:
        h.update(json.dumps([u.id, _sha(u.audio_path.read_bytes())]).encode())
    assert keys.calibration_digest(audio) == h.hexdigest()
    h = hashlib.sha256()
    for u in utterances:
        h.update(json.dumps([u.id, u.text, round(float(u.duration), 4)],
                            ensure_ascii=False).encode())
    assert keys.utterances_digest(utterances) == h.hexdigest()
    what = {"flags": "abc", "onnx": digest, "data": "d", "device": "cpu",
            "settings": resume.relevant_settings(SETTINGS), "calibration": "c"}
    assert resume.job_identity(flags_digest="abc", onnx_digest=digest, data_digest="d",
                               device="cpu", settings=SETTINGS, calibration_digest="c") == \
        _sha(json.dumps(what, sort_keys=True, separators=(",", ":"), default=str))[:24]
    assert resume.sweep_key(["b=1", "a=2", "hydra.x=1"]) == _sha(json.dumps(["a=2", "b=1"]))[:16]
    # tracking/datasets.py
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"audio_filepath": "u0.wav", "text": "да"}\n')
    h = hashlib.sha256(manifest.read_bytes())
    for u in utterances:
        h.update(u.id.encode())
        h.update(hashlib.sha256(u.audio_path.read_bytes()).digest())
    assert keys.dataset_digest(manifest, audio) == h.hexdigest()[:12]
    # flags.py
    canonical = {"precision": "fp16"}
    assert keys.flags_digest(canonical) == _sha(json.dumps(
        canonical, sort_keys=True, separators=(",", ":")))[:12]


def test_the_key_functions_are_the_only_hashing_sites() -> None:
    """No module of the sweep hashes a file or a blob itself: hashlib is imported by
    sweep/keys.py and the file primitive it calls, and file_digest is reached through
    sweep/keys.py (the listed exceptions say why)."""
    hashing: list[str] = []
    digesting: list[str] = []
    for path in sorted(SWEEP.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if name in ("sweep/keys.py", "sweep/infra/files.py") or name in HASHING_ELSEWHERE:
            continue
        if re.search(r"^\s*(import hashlib|from hashlib import)", text, re.M):
            hashing.append(name)
        # file_digest called bare (imported from sweep.infra.files), not as keys.file_digest
        if re.search(r"(?<![.\w])file_digest\(|files\.file_digest\(", text):
            digesting.append(name)
    assert hashing == [], f"hashing outside sweep/keys.py: {hashing}"
    assert digesting == [], f"files hashed outside sweep/keys.py: {digesting}"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[Path]:
    """Every file the sweep hashes (the one primitive under sweep/keys.py), counted by path."""
    from sweep.infra import files

    seen: Counter[Path] = Counter()
    real = files.file_digest

    def counting(path: Path) -> str:
        seen[Path(path).resolve()] += 1
        return real(path)

    monkeypatch.setattr(files, "file_digest", counting)
    return seen


def _settings(tmp_path: Path, *overrides: str) -> Any:
    from hydra import compose, initialize_config_dir

    from sweep.config import JobSettings, register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3",
                               job_name="test"):
        return JobSettings.from_cfg(compose(config_name="config", overrides=[
            "dataset=demo_tiny", "dataset.limit=2", f"builder.cache_dir={tmp_path / 'cache'}",
            "builder.intra_op_threads=1", *overrides]))


class _Run:
    """The run a phase logs to (the recorder's JobRun), kept in memory."""

    def __init__(self) -> None:
        self.logged: list[Any] = []

    def tags(self, *args: Any) -> None:
        self.logged.append(args)

    metrics = artifact = tags


@pytest.mark.parametrize("precision", ["fp32", "typed-fp16"])
def test_a_job_hashes_its_onnx_once(tmp_path: Path, counted: Counter[Path],
                                    precision: str) -> None:
    """The phases a job runs before serving (resolve, precision, route references, build
    through the engine cache) and the fp32 reference after it: the source ONNX is read
    for a digest once, each calibration audio file once (it was 4 and 2 times)."""
    from sweep import job
    from sweep.builder import build_engine
    from sweep.builder.routes import job_reference
    from sweep.evaluate.agreement import fp32_logprobs
    from sweep.inputs import resolve_inputs

    if precision.startswith("typed"):
        pytest.importorskip("modelopt.onnx")
    onnx = tiny_monolithic_onnx(tmp_path / "tiny.onnx")
    settings = _settings(tmp_path, f"model.onnx_path={onnx}",
                         *(["trt.strongly_typed=true", "trt.precision=fp16",
                            "dataset.calibration_utterances=2"]
                           if precision.startswith("typed") else []))
    flags = FlagSet.from_mapping(settings.trt)
    inputs = resolve_inputs(settings, flags)
    typed = job.realise_in_graph(settings, inputs, flags, _Run(), tmp_path)  # type: ignore[arg-type]
    reference = job_reference(inputs, flags, settings.builder.derived_dir)
    engine = build_engine(settings.builder, typed.path, flags, reference=reference,
                          onnx_digest=typed.digest)
    fp32_logprobs(inputs.model, inputs.utterances, settings.builder.derived_dir,
                  onnx_digest=inputs.onnx_digest)
    assert engine.path.is_file()
    assert counted[onnx.resolve()] == 1, counted
    assert inputs.onnx_digest == _sha(onnx.read_bytes())
    if inputs.calibration is not None:
        calibration = DEMO / "data" / "demo_calib"
        audio = {p: n for p, n in counted.items() if p.is_relative_to(calibration)}
        assert len(audio) == 2 and set(audio.values()) == {1}, audio
    # The test set is hashed once too (its MLflow dataset digest).
    tiny = {p: n for p, n in counted.items() if p.is_relative_to(DEMO / "data" / "demo_tiny")}
    assert len(tiny) == 2 and set(tiny.values()) == {1}, tiny


def test_arrays_digest_reads_the_rows_it_is_given() -> None:
    a = {"x": np.arange(6, dtype=np.float32).reshape(3, 2), "s": np.zeros((3, 1), np.float32)}
    assert keys.arrays_digest(a, 2) == keys.arrays_digest({k: v[:2] for k, v in a.items()})
    assert keys.arrays_digest(a) != keys.arrays_digest(a, 2)
