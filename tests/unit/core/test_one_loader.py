"""Every tool reads its configuration through one loader (sweep/loader.py): a config folder
of one's own with its own ``tracking/`` and ``dataset/`` yaml gives preflight,
precision_search, the doctor, promote and serve the same store, test set and decoder as
the sweep, from the same options; an explicit flag still wins. The stores are real SQLite
MLflow stores."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.cli import ExitCode
from sweep.errors import ConfigError
from sweep.tracking import tags as tag
from tests.support.paths import DEMO, ROOT

TINY = DEMO / "data" / "demo_tiny"


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    """tmp/conf with tracking/mine.yaml (a SQLite store under tmp), dataset/mine.yaml (a
    NeMo-style copy of three demo_tiny utterances), decoder/mine.yaml (beam, width 17)."""
    conf = tmp_path / "conf"
    for group in ("tracking", "dataset", "decoder"):
        (conf / group).mkdir(parents=True)
    (conf / "tracking" / "mine.yaml").write_text(
        "defaults:\n  - local\n  - _self_\n"
        f"uri: sqlite:///{tmp_path}/store/mlflow.db\n"
        f"artifact_root: {tmp_path}/store/artifacts\nexperiment: mine-exp\n")
    (conf / "dataset" / "mine.yaml").write_text(
        "defaults:\n  - dataset_schema\n  - _self_\n"
        f"name: calls\nbase_path: {tmp_path}/data\nmanifest: manifest.json\n"
        "calibration: null\n")
    (conf / "decoder" / "mine.yaml").write_text(
        "defaults:\n  - beam_schema\n  - _self_\n"
        f"kenlm_path: {DEMO / 'lm_3gram.arpa'}\nbeam_width: 17\n")
    calls = tmp_path / "data" / "calls"
    (calls / "audio").mkdir(parents=True)
    rows = [json.loads(line) for line in
            (TINY / "tarred_audio_manifest.json").read_text().splitlines()[:3]]
    for row in rows:
        shutil.copy(TINY / row["audio_filepath"], calls / "audio")
        row["audio_filepath"] = f"audio/{row['audio_filepath']}"
    (calls / "manifest.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return tmp_path


def options(root: Path) -> list[str]:
    return ["--config-dir", str(root / "conf"), "tracking=mine", "dataset=mine",
            "decoder=mine"]


def store_uri(root: Path) -> str:
    return f"sqlite:///{root}/store/mlflow.db"


def finished_sweep(uri: str, experiment: str, artifacts: Path) -> str:
    """A FINISHED sweep parent run (no jobs) in a real SQLite store; its run id."""
    client = MlflowClient(uri)
    artifacts.mkdir(parents=True, exist_ok=True)
    exp = client.create_experiment(experiment, artifact_location=artifacts.as_uri())
    run = client.create_run(exp, run_name="sweep 12-00-00", tags={tag.KIND: "sweep"})
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


# --- each tool, the same options ---------------------------------------------------------------

def test_preflight_checks_the_config_dir_s_dataset(mine: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.preflight.cli import main

    main([*options(mine), "builder=emulate"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "dataset calls" in x)
    assert line.startswith("ok") and f"{mine}/data/calls/manifest.json: 3 utterances" in line
    assert "ok   KenLM for decoder=beam" in out


def test_precision_search_reads_the_same_store_dataset_and_decoder(mine: Path) -> None:
    from sweep.precision_search.cli import _parser, _setup, _store

    args = _parser().parse_args(["--target", "int8", *options(mine)])
    setup = _setup(args)
    assert [u.audio_path.parent for u in setup.utterances] == [mine / "data/calls/audio"] * 3
    assert setup.settings.decoder.beam_width == 17
    store = _store(setup)  # opened where the config says
    assert store.experiment == "mine-exp"
    assert (mine / "store" / "mlflow.db").is_file()


def test_doctor_resolves_the_config_s_model_dataset_decoder_and_store(mine: Path) -> None:
    from sweep.doctor.cli import _utterances, parser, resolve

    args = parser().parse_intermixed_args([*options(mine), "model=demo_skip_preprocessor"])
    resolved = resolve(args)
    assert resolved.model.name == "demo_skip_preprocessor"
    assert resolved.decoder.name == "beam" and resolved.decoder.beam_width == 17
    assert resolved.decoder.kenlm_path == str(DEMO / "lm_3gram.arpa")
    assert resolved.tracking_uri == store_uri(mine)
    assert resolved.artifact_root == f"{mine}/store/artifacts"
    utterances = _utterances(args, resolved.model, resolved.dataset)
    assert [u.audio_path.parent for u in utterances] == [mine / "data/calls/audio"] * 3


def test_doctor_flags_win_over_the_config(mine: Path, tmp_path: Path) -> None:
    from sweep.doctor.cli import _utterances, parser, resolve

    args = parser().parse_intermixed_args([
        *options(mine), "--model", "demo_monolithic", "--onnx", str(tmp_path / "x.onnx"),
        "--dataset", str(TINY), "--limit", "2", "--beam-width", "5",
        "--decoder", "greedy", "--tracking-uri", "sqlite:///elsewhere.db",
        "--artifact-root", "elsewhere"])
    resolved = resolve(args)
    assert resolved.model.name == "demo_monolithic"
    assert resolved.model.onnx_path == tmp_path / "x.onnx"
    assert resolved.decoder.name == "greedy" and resolved.decoder.beam_width == 5
    assert (resolved.tracking_uri, resolved.artifact_root) == ("sqlite:///elsewhere.db",
                                                               "elsewhere")
    assert [u.audio_path.parent for u in _utterances(args, resolved.model,
                                                     resolved.dataset)] == [TINY] * 2


def test_doctor_deploys_the_config_s_flag_set_or_exact_fp32() -> None:
    from sweep.doctor.cli import parser, resolve

    plain = resolve(parser().parse_intermixed_args([]))
    assert plain.trt["tf32"] is False and not plain.trt_spelled  # exact fp32, as before
    typed = resolve(parser().parse_intermixed_args(
        ["trt.strongly_typed=true", "--trt", "opt_level=5"]))
    assert typed.trt["strongly_typed"] is True and typed.trt["opt_level"] == 5
    assert typed.trt["tf32"] is True and typed.trt_spelled  # the config's, as the sweep's


def test_doctor_model_yaml_by_path_is_not_shadowed_by_a_bundled_name(tmp_path: Path) -> None:
    """``--model path.yaml`` loads that file, even named like a bundled option."""
    from sweep.doctor.cli import load_model

    path = tmp_path / "mine" / "demo_monolithic.yaml"
    path.parent.mkdir()
    path.write_text("defaults:\n  - model_schema\n  - _self_\nname: tone\n"
                    f"onnx_path: {tmp_path / 'tone.onnx'}\nchunk_ms: 300\n"
                    "states:\n  - {input: state, output: state_next}\n")
    model = load_model(str(path))
    assert (model.name, model.chunk_ms, model.onnx_path) == ("tone", 300,
                                                             tmp_path / "tone.onnx")
    assert load_model("demo_monolithic").name == "demo_monolithic"


def test_promote_reads_the_config_s_store_and_experiment(
        mine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.promote.cli import main, parse_args

    parent = finished_sweep(store_uri(mine), "mine-exp", mine / "store" / "artifacts")
    code = main(["--dry-run", *options(mine)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == ExitCode.REFUSED
    assert f"sweep {parent} has no job runs" in err  # found in the config's store
    from sweep.promote.cli import resolve

    resolved = resolve(parse_args(["--dry-run", *options(mine)]))
    assert (resolved.tracking_uri, resolved.experiment) == (store_uri(mine), "mine-exp")
    # dataset= chose the test set: only its jobs are candidates, as with --dataset.
    assert (resolved.dataset, resolved.model) == ("calls", None)
    assert resolve(parse_args([])).dataset is None


def test_promote_explicit_flags_win(mine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.promote.cli import main, parse_args

    other = mine / "other" / "mlflow.db"
    code = main(["--dry-run", "--tracking-uri", f"sqlite:///{other}", *options(mine)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == ExitCode.REFUSED and f"no MLflow store at {other}" in err
    from sweep.promote.cli import resolve

    resolved = resolve(parse_args(["--experiment", "x", "--dataset", "d", *options(mine)]))
    assert (resolved.experiment, resolved.dataset) == ("x", "d")


def test_serve_reads_the_config_s_store(mine: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.serve.cli import fetch_run, main, parser

    finished_sweep(store_uri(mine), "mine-exp", mine / "store" / "artifacts")
    assert main(["0123abcd", *options(mine)]) == ExitCode.REFUSED
    err = " ".join(capsys.readouterr().err.split())
    assert f"run '0123abcd' is not in the store {store_uri(mine)}" in err
    from sweep.serve.cli import resolve

    args = parser().parse_intermixed_args(["0123abcd", *options(mine), "server=docker",
                                           "server.image=my/triton:1"])
    resolved = resolve(args)
    assert resolved.tracking_uri == store_uri(mine)
    assert (resolved.server.name, resolved.server.image) == ("docker", "my/triton:1")
    assert (resolved.server.grpc_port, resolved.server.keep_running) == (8001, False)
    with pytest.raises(ConfigError, match=re.escape(f"not in the store {store_uri(mine)}")):
        fetch_run(resolved.tracking_uri, "0123abcd", mine / "serve")
    explicit = parser().parse_intermixed_args(["0123abcd", "--tracking-uri", "sqlite:///b.db",
                                               *options(mine)])
    assert resolve(explicit).tracking_uri == "sqlite:///b.db"


def test_the_loader_composes_what_python_m_sweep_composes(mine: Path) -> None:
    """The same options through Hydra's own entry (``python -m sweep ... --cfg job`` prints
    the job's config and runs nothing) and through the loader: the same config, a primary
    config of the config folder (``-cn``) included."""
    import subprocess
    import sys

    import yaml
    from omegaconf import OmegaConf

    from sweep.loader import ConfigOptions, compose

    (mine / "conf" / "mine.yaml").write_text(
        "defaults:\n  - config\n  - override tracking: mine\n  - _self_\n")
    overrides = ["dataset=mine", "decoder=mine", "model=demo_skip_preprocessor",
                 "trt.opt_level=5", "server=docker"]
    done = subprocess.run([sys.executable, "-m", "sweep", "--config-dir", str(mine / "conf"),
                           "-cn", "mine", *overrides, "--cfg", "job"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = compose(ConfigOptions(tuple(overrides), str(mine / "conf"), "mine"))
    assert OmegaConf.to_container(ours) == yaml.safe_load(done.stdout)
    assert ours.tracking.uri == store_uri(mine) and ours.dataset.name == "calls"


# --- the store's precedence, and refusals ------------------------------------------------------

def test_mlflow_tracking_uri_is_not_read_as_the_sweep_does_not_read_it(
        mine: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.promote.cli import main

    # The sweep writes to tracking.uri whatever the environment says; promote reads there.
    parent = finished_sweep(store_uri(mine), "mine-exp", mine / "store" / "artifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ann:pa55-word@mlflow.example:5000")
    assert main(["--dry-run", *options(mine)]) == ExitCode.REFUSED
    err = " ".join(capsys.readouterr().err.split())
    assert f"sweep {parent} has no job runs" in err
    assert "MLFLOW_TRACKING_URI (http://***@mlflow.example:5000) is not read" in err
    assert "pa55-word" not in err
    from sweep.promote.cli import parse_args, resolve

    assert resolve(parse_args(["--tracking-uri", "sqlite:///x.db"])).tracking_uri \
        == "sqlite:///x.db"
    assert "not read" not in capsys.readouterr().err  # an explicit store: nothing to say


def test_a_sweep_override_is_refused_by_a_one_job_tool(mine: Path) -> None:
    from sweep.doctor.cli import parser, resolve

    with pytest.raises(ConfigError, match=r"trt\.precision=fp16,int8: this tool reads one"):
        resolve(parser().parse_intermixed_args(["trt.precision=fp16,int8"]))


def test_a_bad_override_is_one_refusal_with_the_password_hidden() -> None:
    from sweep.serve.cli import parser, resolve

    with pytest.raises(ConfigError, match="nope"):
        resolve(parser().parse_intermixed_args(["r1", "tracking.nope=1"]))
    with pytest.raises(ConfigError) as info:  # Hydra's parse error quotes the override
        resolve(parser().parse_intermixed_args(["r1", "tracking.uri=http://ann:pa55-word@h)"]))
    assert "tracking.uri=http://***@h)" in str(info.value)
    assert "pa55-word" not in str(info.value)


def test_no_module_but_the_loader_composes_hydra_configs() -> None:
    """Hydra's compose API is called in sweep/loader.py only (``python -m sweep`` itself
    enters through @hydra.main)."""
    entry_points = {"compose", "initialize", "initialize_config_dir",
                    "initialize_config_module"}
    offenders = []
    for path in sorted((ROOT / "sweep").rglob("*.py")):
        if path == ROOT / "sweep" / "loader.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == \
                    "hydra" and {a.name for a in node.names} & entry_points:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in entry_points and \
                    isinstance(node.value, ast.Name) and node.value.id == "hydra":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
