"""TensorRT 11.1 build routes: the flags, the version rule, the reference pairs of the fp32
model on streamed inputs, and the trtexec command lines of a search, a resumed search and a
rebuilt route, run through the strict trtexec stand-in (its option tables and tuning loop
follow trtexec's 11.1 source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from sweep.builder import routes
from sweep.builder.trtexec import TrtexecBuilder, dry_run_command, finish_search, trtexec_args
from sweep.errors import FlagSetError
from sweep.flags import FlagSet
from tests.support.models import tiny_monolithic_onnx
from tests.unit.builder.test_trtexec_standin import trtexec

SEARCH = {"strongly_typed": True, "tune_build_routes": "fast",
          "tuning_expr": "-match_ragged_mha=[on|off] -copy_ppg=[on|off] -reshape_ppg=on"}
V11_4 = (11, 4, 0)
HEADER_KEYS = ["tuner_version", "accuracy_algorithm", "accuracy_parameter",
               "searching_algorithm", "command_line", "default_build_route", "tuning_expr",
               "files", "argv"]
ITER_KEYS = ["iter", "build_route", "crash", "error_message", "accuracy_loss", "gpu_time"]


def streamed(rows: int = 4) -> dict[str, np.ndarray]:
    # Stand-ins for the (audio chunk, state) rows calibration.collect records.
    rng = np.random.default_rng(1)
    return {"signal": rng.integers(-3000, 3000, (rows, 3200, 1)).astype(np.int32),
            "state": rng.normal(size=(rows, 10)).astype(np.float32)}


def local(argv: list[str], tmp_path: Path, tuning: Path) -> list[str]:
    for folder in ("onnx", "work", "cache"):
        (tmp_path / folder).mkdir(exist_ok=True)
    out = []
    for arg in argv:
        for folder in ("onnx", "work", "cache"):
            arg = arg.replace(f"=/{folder}/", f"={tmp_path}/{folder}/")
        out.append(arg.replace(f"{routes.CONTAINER_DIR}/", f"{tuning}/"))
    return out


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, FlagSet, routes.ReferencePairs]:
    (tmp_path / "onnx").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "onnx" / "tiny.onnx")
    flags = FlagSet.from_mapping({**SEARCH, "opt_batch": 2, "max_batch": 2})
    refs = routes.write_reference_pairs(onnx_path, streamed(), 2, tmp_path / "tuning", flags)
    return onnx_path, flags, refs


def test_reference_outputs_are_the_fp32_models_on_the_streamed_rows(
        setup: tuple[Path, FlagSet, routes.ReferencePairs]) -> None:
    onnx_path, _, refs = setup
    assert len(refs.pairs) == 2
    rows = streamed()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {k: v[2:4] for k, v in rows.items()})
    inputs, outputs = refs.pairs[1]
    assert (refs.dir / dict(inputs)["signal"]).read_bytes() == rows["signal"][2:4].tobytes()
    for (name, file), want in zip(outputs, expected, strict=True):
        got = np.frombuffer((refs.dir / file).read_bytes(), dtype=want.dtype)
        np.testing.assert_array_equal(got, want.ravel(), err_msg=name)


@pytest.mark.parametrize("version", [(10, 16, 0), (11, 0, 0)])
@pytest.mark.parametrize("flags", [{"build_route": "-copy_ppg=off"}, SEARCH])
def test_routes_are_refused_before_11_1_naming_it(version: tuple[int, int, int],
                                                  flags: dict[str, object]) -> None:
    with pytest.raises(FlagSetError, match=r"new in TensorRT 11\.1"):
        trtexec_args(FlagSet.from_mapping({"strongly_typed": True, **flags}), "/m.onnx",
                     "/p.plan", {"x": (4,)}, version=version, tuning=["--dryRun"])


@pytest.mark.parametrize("bad", [{"build_route": "copy_ppg=off"},
                                 {"tune_build_routes": "fast"},
                                 {"tune_build_routes": "greedy", "tuning_expr": "-a=[1|2]"},
                                 {"tuning_timeout_s": 60},
                                 {"build_route": "-a=1", "tune_build_routes": "full",
                                  "tuning_expr": "-a=[1|2]"}])
def test_malformed_route_flags_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(FlagSetError, match="trt\\."):
        FlagSet.from_mapping(bad)


def test_the_emulator_refuses_routes_with_the_reason(tmp_path: Path) -> None:
    from sweep.builder.emulate import EmulateBuilder

    onnx_path = tiny_monolithic_onnx(tmp_path / "m.onnx")
    with pytest.raises(FlagSetError, match="ONNX Runtime does not have"):
        EmulateBuilder().build(onnx_path, FlagSet.from_mapping(SEARCH), tmp_path / "e")


def test_dry_run_argv_is_accepted_by_the_11_1_standin_and_writes_the_documented_record(
        setup: tuple[Path, FlagSet, routes.ReferencePairs], tmp_path: Path) -> None:
    onnx_path, flags, refs = setup
    argv, _ = dry_run_command("img", "/usr/src/tensorrt/bin/trtexec", onnx_path, flags,
                              "11.4", reference=refs)
    assert f"--tuneBuildRoutes={flags.tuning_expr}" in argv and "--tuningSearch=fast" in argv
    assert argv.count("--refPair=0") == 1 and "--accuracyThreshold=0.01" in argv
    result = trtexec(tmp_path, "110400", *local(argv[1:], tmp_path, refs.dir))
    assert result.rc == 0, result.text
    record = next(refs.dir.glob("record-*.jsonl"))
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert list(lines[0]) == HEADER_KEYS and lines[0]["tuning_expr"] == flags.tuning_expr
    # fast: the baseline plus one knob changed at a time (two variable knobs here).
    assert [list(it) for it in lines[1:]] == [ITER_KEYS] * 3
    assert lines[1]["build_route"] == "-match_ragged_mha=on -copy_ppg=on -reshape_ppg=on"
    assert set(lines[1]["accuracy_loss"]) == {"logprobs", "state_next"}
    best = routes.best_from_log(result.text)
    assert best is not None and best[0] in {it["build_route"] for it in lines[1:]}
    assert best[1] == min(it["gpu_time"] for it in lines[1:])


def test_an_interrupted_search_resumes_and_a_finished_one_is_rebuilt_by_route(
        setup: tuple[Path, FlagSet, routes.ReferencePairs], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    onnx_path, flags, refs = setup
    builder = TrtexecBuilder(image="img", reference=refs)
    record = refs.dir / routes.record_name("11.4.0", "gpu")

    def run(argv: list[str], **env: str) -> str:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = trtexec(tmp_path, "110400", *local(argv[1:], tmp_path, refs.dir))
        monkeypatch.delenv("FAKE_TRT_TUNING_STOP_AFTER", raising=False)
        assert (result.rc == 0) == (not env), result.text
        return result.text

    fresh, route, notes = builder.search_command(onnx_path, flags, V11_4, "/cache/t", record)
    assert route is None and not notes and "--continue" not in fresh
    run(fresh, FAKE_TRT_TUNING_STOP_AFTER="1")  # interrupted after one iteration
    assert len(record.read_text().splitlines()) == 2

    resume, route, notes = builder.search_command(onnx_path, flags, V11_4, "/cache/t", record)
    assert resume[1:] == ["--continue", f"--tuningCacheFile={routes.CONTAINER_DIR}/"
                          f"{record.name}"] and "resumed" in notes[0]
    log = run(resume)
    iterations = [json.loads(line)["iter"] for line in record.read_text().splitlines()[1:]]
    assert iterations == [0, 1, 2]  # picked up after the recorded one, none twice
    picked, metrics, files = finish_search(log, record, None, tmp_path / "build.log")
    assert metrics["tuning_iterations"] == 3 and picked is not None
    # Logged as copies beside the build's log (inside its cache entry); the record stays.
    copy = tmp_path / record.name
    assert copy in files and copy.read_text() == record.read_text()

    again, route, notes = builder.search_command(onnx_path, flags, V11_4, "/cache/t", record)
    assert route == picked and f"--setBuildRoute={picked}" in again
    assert not any(a.startswith("--tuneBuildRoutes") for a in again)
    run(again)  # the 11.1 stand-in accepts the rebuilt route


def test_continue_takes_nothing_but_the_record(tmp_path: Path) -> None:
    result = trtexec(tmp_path, "110400", "--continue", "--tuningCacheFile=x.jsonl",
                     "--onnx=m.onnx")
    assert result.rc != 0 and "no other options are allowed" in result.text


def test_unknown_knobs_fail_as_trtexec_reports_them(
        setup: tuple[Path, FlagSet, routes.ReferencePairs], tmp_path: Path) -> None:
    onnx_path, _, _ = setup
    bad = trtexec(tmp_path, "110400", f"--onnx={onnx_path}", "--tuneBuildRoutes=-nope=[a|b]")
    assert bad.rc != 0 and "Failed to parse --tuneBuildRoutes expression" in bad.text
    route = trtexec(tmp_path, "110400", f"--onnx={onnx_path}", "--setBuildRoute=-nope=on")
    assert route.rc != 0 and "--setBuildRoute" in route.text
    ok = trtexec(tmp_path, "110400", f"--onnx={onnx_path}", "--setBuildRoute=-copy_ppg=off")
    assert ok.rc == 0, ok.text


@pytest.mark.parametrize("remainder", ["fp32", "fp16", "bf16"])
def test_int8_with_each_remainder_and_a_route_plans_an_argv_the_standin_accepts(
        remainder: str, tmp_path: Path) -> None:
    (tmp_path / "onnx").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "onnx" / "tiny.onnx")
    flags = FlagSet.from_mapping({"strongly_typed": True, "precision": "int8",
                                  "high_precision_dtype": remainder,
                                  "build_route": "-match_ragged_mha=off"})
    argv, _ = dry_run_command("img", "trtexec", onnx_path, flags, "11.4")
    assert "--setBuildRoute=-match_ragged_mha=off" in argv
    result = trtexec(tmp_path, "110400", *local(argv[1:], tmp_path, tmp_path))
    assert result.rc == 0, result.text
    with pytest.raises(FlagSetError, match=r"11\.1"):
        dry_run_command("img", "trtexec", onnx_path, flags, "10.16")


# -- TrtexecBuilder.build, with the container boundary replaced by the stand-in run in a
# subprocess (the rehearsal runs the same build against the real Docker daemon) ----------
def _local_run(version: str, root: Path) -> Any:
    """containers.run_to_completion, locally: each mount is a symlink under ``root`` (one
    "container" filesystem whose /work is the current job's), so the paths trtexec records
    stay the same from one job to the next, as they do in a real container."""
    import subprocess
    import sys
    import time

    from sweep.infra.containers import RunResult
    from tests.unit.builder.test_trtexec_standin import STANDIN

    def run(_client: object, _image: str, command: list[str], *, log_path: Path,
            volumes: dict[str, dict[str, str]], **_: object) -> RunResult:
        args = []
        for host, bind in volumes.items():
            link = root / bind["bind"].lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(host, target_is_directory=True)
        for arg in command[1:]:
            for bind in volumes.values():
                arg = arg.replace(f"={bind['bind']}/", f"={root}{bind['bind']}/").replace(
                    f":{bind['bind']}/", f":{root}{bind['bind']}/")
            args.append(arg)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(STANDIN), *args], capture_output=True,
                              text=True, check=False, timeout=60,
                              env={**__import__("os").environ, "FAKE_TRT_VERSION": version,
                                   "FAKE_TRT_ARGV_FILE": ""})
        log_path.write_text(proc.stdout + proc.stderr)
        return RunResult(proc.returncode, time.perf_counter() - start, False)
    return run


def test_build_searches_resumes_and_rebuilds_the_picked_route(
        setup: tuple[Path, FlagSet, routes.ReferencePairs], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.builder import trtexec as module
    from sweep.infra import containers

    onnx_path, flags, refs = setup
    builder = TrtexecBuilder(image="img", reference=refs)
    monkeypatch.setattr(builder, "_docker", lambda: object())
    monkeypatch.setattr(builder, "probe", lambda _log_dir=None: (11, 4, 0))
    monkeypatch.setattr(builder, "version", lambda: "TensorRT 11.4.0 (stand-in)")
    monkeypatch.setattr(containers, "run_to_completion",
                        _local_run("110400", tmp_path / "container"))
    monkeypatch.setattr(module, "host_device", lambda: "gpu:test")

    monkeypatch.setenv("FAKE_TRT_TUNING_STOP_AFTER", "2")
    with pytest.raises(module.BuildError, match="exited with code"):
        builder.build(onnx_path, flags, tmp_path / "job1")
    monkeypatch.delenv("FAKE_TRT_TUNING_STOP_AFTER")

    resumed = builder.build(onnx_path, flags, tmp_path / "job2")
    assert (tmp_path / "job2" / "trtexec.cmd").read_text().split()[1] == "--continue"
    assert resumed.metrics["tuning_iterations"] == 3
    record = next(p for p in resumed.artifacts if p.suffix == ".jsonl")
    # The engine's copy lies in its build folder; the record it copies stays with the
    # reference pairs, where the next search resumes.
    assert record.parent == tmp_path / "job2" and (refs.dir / record.name).is_file()
    route = resumed.runtime["build_route"]
    assert route and any(p.name.endswith(".best.json") for p in resumed.artifacts)
    # The 11.x stand-in's layer information lists no layers: noted, not a mismatch.
    assert resumed.runtime["precision_mismatch"] is None
    assert "not verified" in resumed.runtime["realised_note"]

    rebuilt = builder.build(onnx_path, flags, tmp_path / "job3")
    cmd = (tmp_path / "job3" / "trtexec.cmd").read_text()
    assert f"--setBuildRoute={route}" in cmd and "--tuneBuildRoutes" not in cmd
    assert rebuilt.runtime["build_route"] == route
