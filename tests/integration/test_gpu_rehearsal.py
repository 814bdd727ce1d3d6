"""The sweep a GPU-host user runs (``builder=trtexec server=docker``), rehearsed against
stand-ins as strict as the real tools: trtexec parsing its options from tables read off
trtexec's own source for 10.16 and 11.x (tests/standins/trtexec.py), and a tritonserver
that holds the model repository to Triton's rules (Triton's model-config protobuf,
KIND_GPU for a plan, the plan's TensorRT version) before it serves the plan's ONNX on the
CPU (tests/standins/tritonserver.py). TensorRT and GPUs themselves never run here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.client import DockerClient
from mlflow.tracking import MlflowClient

from sweep.infra.files import LABEL
from sweep.preflight.checks import STANDIN_LABEL
from sweep.tracking import tags as tag
from tests.support.models import demo_reference_wer
from tests.support.paths import ROOT
from tests.support.sweep import run_sweep

pytestmark = [pytest.mark.docker, pytest.mark.integration]

STANDINS = ROOT / "tests" / "standins"
TEMPLATES = ROOT / "triton_templates"
# (trtexec banner encoding, TensorRT version, Triton version) per TensorRT mode.
MODES = {"10": ("101600", "10.16.0", "2.62.0"), "11": ("110100", "11.1.0", "2.68.0")}


def build_standin_image(client: DockerClient, base: str, mode: str, tag: str) -> str:
    banner, trt, triton = MODES[mode]
    with tempfile.TemporaryDirectory() as ctx:
        for name in ("trtexec.py", "trtexec_options.json", "tritonserver.py",
                     "triton_rules.py"):
            shutil.copy(STANDINS / name, Path(ctx) / name)
        shutil.copy(TEMPLATES / "model" / "model.py", Path(ctx) / "model.py")
        shutil.copy(TEMPLATES / "common" / "batched.py", Path(ctx) / "batched.py")
        (Path(ctx) / "Dockerfile").write_text(
            f"FROM {base}\n"
            # NGC's layout: trtexec at /usr/src/tensorrt/bin, tritonserver on PATH.
            "COPY trtexec.py trtexec_options.json /usr/src/tensorrt/bin/\n"
            "COPY tritonserver.py triton_rules.py /opt/standins/\n"
            "COPY model.py batched.py /opt/standins/templates/\n"
            "RUN mv /usr/src/tensorrt/bin/trtexec.py /usr/src/tensorrt/bin/trtexec && "
            "chmod 755 /usr/src/tensorrt/bin/trtexec && "
            "mv /usr/local/bin/tritonserver /usr/local/bin/tritonserver-real && "
            "printf '#!/bin/sh\\nexec /opt/venv/bin/python /opt/standins/tritonserver.py "
            "\"$@\"\\n' > /usr/local/bin/tritonserver && chmod 755 /usr/local/bin/tritonserver\n"
            # What NGC images declare, and what the preflight reads.
            f"ENV FAKE_TRT_VERSION={banner} TRT_VERSION={trt} "
            f"NVIDIA_TRITON_SERVER_VERSION={triton}\n")
        client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, pull=False,
                            labels={LABEL: "1", STANDIN_LABEL: "true"})
    return tag


@pytest.fixture(scope="module")
def standin_images(cpu_image: str, docker_client: DockerClient
                   ) -> Iterator[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    tags = {mode: build_standin_image(docker_client, cpu_image, mode,
                                      f"trt-sweep-gpu-standin:{mode}-{run}")
            for mode in MODES}
    yield tags
    for image_tag in tags.values():
        docker_client.images.remove(image_tag, force=True)


def gpu_path(image: str) -> list[str]:
    """The GPU-host sweep's settings, with the stand-in image and no GPU request (the
    daemon here has no NVIDIA runtime; the stand-in serves plans on its CPU)."""
    return ["builder=trtexec", "server=docker", f"builder.image={image}",
            f"server.image={image}", "builder.gpus=null", "dataset=demo_tiny",
            "eval.streams=2", "builder.timeout_s=300"]


def jobs(tmp: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("trt-sweep")
    assert exp is not None, "the sweep created no experiment"
    runs = [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get(tag.KIND) == "job"]
    return sorted(runs, key=lambda r: int(r.data.params["job.num"]))


def artifact(tmp: Path, run_id: str, path: str) -> str:
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    return Path(client.download_artifacts(run_id, path, str(tmp / f"dl-{run_id}"))
                ).read_text()


def no_containers_left(client: DockerClient, image: str) -> None:
    # Containers of this module's own image only: other test sessions share the daemon.
    left = client.containers.list(all=True, filters={"ancestor": image})
    assert not left, f"the sweep left containers behind: {[c.name for c in left]}"


def test_tensorrt_10_sweep_weakly_typed_builds_and_serves(
        standin_images: dict[str, str], docker_client: DockerClient,
        tmp_path: Path) -> None:
    sweep = run_sweep(["-m", *gpu_path(standin_images["10"]), "trt.precision=fp32,fp16",
                       "model=demo_monolithic,demo_skip_preprocessor"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    runs = jobs(tmp_path)
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        assert run.data.tags["builder_version"].startswith("TensorRT 10.16.0")
        assert run.data.metrics["trt_throughput_qps"] == 130.298  # from trtexec's log
        # The stand-in plan is the fp32 model (fp16 rounded): the reference's WER, give or
        # take a few words of 43.
        assert 0.0 <= run.data.metrics["wer"] <= demo_reference_wer() + 0.1
        cmd = artifact(tmp_path, run.info.run_id, "engine/trtexec.cmd")
        assert ("--fp16" in cmd) == (run.data.params["trt.precision"] == "fp16")
        assert "--useSpinWait" in cmd and "--noDataTransfers" not in cmd
        config = artifact(tmp_path, run.info.run_id, "model_repository/model/config.pbtxt")
        assert 'platform: "tensorrt_plan"' in config and "KIND_GPU" in config
    no_containers_left(docker_client, standin_images["10"])


def test_tensorrt_11_sweep_strongly_typed_and_weak_flags_refused(
        standin_images: dict[str, str], docker_client: DockerClient,
        tmp_path: Path) -> None:
    image = standin_images["11"]
    typed = run_sweep(["-m", *gpu_path(image), "trt.strongly_typed=true",
                       "trt.opt_level=0,5"], tmp_path / "typed")
    assert typed.returncode == 0, typed.stderr[-4000:]
    for run in jobs(tmp_path / "typed"):
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        assert run.data.tags["builder_version"].startswith("TensorRT 11.1.0")
        cmd = artifact(tmp_path / "typed", run.info.run_id, "engine/trtexec.cmd")
        # 11 has no --stronglyTyped (always on) and flipped the timing pass's defaults.
        assert "--stronglyTyped" not in cmd
        assert "--includeDataTransfers" in cmd and "--noCudaGraph" in cmd
    weak = run_sweep([*gpu_path(image), "trt.precision=fp16"], tmp_path / "weak")
    assert weak.returncode != 0
    (run,) = jobs(tmp_path / "weak")
    assert run.info.status == "FAILED"
    error = run.data.tags["error"]
    assert "Weak typing is no longer supported" in error and "26.05" in error
    no_containers_left(docker_client, image)


def test_preflight_passes_what_the_standin_image_can_satisfy(
        standin_images: dict[str, str]) -> None:
    image = standin_images["10"]
    ok = subprocess.run([sys.executable, "-m", "sweep.preflight", *gpu_path(image)[:5]],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "TensorRT 10.16.0, Triton 2.62.0" in ok.stdout
    # Asking for GPUs on a daemon without the NVIDIA runtime names it and the fix.
    gpus = subprocess.run([sys.executable, "-m", "sweep.preflight", *gpu_path(image)[:4],
                           "builder.gpus=all", "server.gpus=all"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert gpus.returncode == 2
    assert "FAIL nvidia container runtime" in gpus.stdout
    assert "nvidia-ctk runtime configure" in gpus.stdout
    mixed = subprocess.run([sys.executable, "-m", "sweep.preflight", "builder=trtexec",
                            "server=docker", f"builder.image={image}",
                            f"server.image={standin_images['11']}", "builder.gpus=null"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2
    assert "FAIL one TensorRT for build and serve" in mixed.stdout


def first_hour_commands() -> list[str]:
    """The shell lines of docs/gpu-hosts.md's step-by-step section, in order."""
    text = (ROOT / "docs" / "gpu-hosts.md").read_text()
    section = text.split("## The first hour, step by step", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_first_hour_of_the_docs_runs_as_written(standin_images: dict[str, str],
                                                docker_client: DockerClient,
                                                tmp_path: Path) -> None:
    commands = first_hour_commands()
    assert [c.split()[:3] for c in commands if c.startswith("python")] == [
        ["python", "-m", "sweep.preflight"], ["python", "-m", "sweep"],
        ["python", "-m", "sweep"], ["python", "-m", "sweep.promote"],
        ["python", "-m", "sweep.promote"]], commands
    env: dict[str, str] = {}
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    production = tmp_path / "triton"
    for command in commands:
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            value = value.strip('"')
            if name == "IMAGE":
                value = standin_images["11"]  # the default image is TensorRT 11's
            value = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], value)
            # The only difference to a GPU host: no GPUs to ask for (the stand-in image
            # serves plans on its CPU, and says so with its label).
            env[name] = value.replace("server.gpus=all", "builder.gpus=null")
            continue
        argv = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command))
        if argv[:2] == ["mkdir", "-p"]:
            assert argv[2:] == ["/srv/triton"]
            production.mkdir(parents=True)
            continue
        assert argv[:2] == ["python", "-m"]
        if argv[2] == "sweep":
            result = run_sweep(argv[3:], tmp_path)
        else:
            if argv[2] == "sweep.promote":
                argv = [a if a != "/srv/triton" else str(production) for a in argv]
                argv += ["--tracking-uri", store]
            result = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT,
                                    capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}" \
                                       f"\n{result.stderr[-3000:]}"
    runs = jobs(tmp_path)
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    installed = sorted(p.relative_to(production).as_posix()
                       for p in production.rglob("*") if p.is_file())
    assert "tone/config.pbtxt" in installed and "tone/1/model.plan" in installed, installed
    no_containers_left(docker_client, standin_images["11"])


def test_tensorrt_11_route_search_logs_its_record_and_reuses_the_route_on_resume(
        standin_images: dict[str, str], docker_client: DockerClient,
        tmp_path: Path) -> None:
    # A build-route search (TensorRT 11.1's Global Performance Tuner) end to end: trtexec's
    # accuracy filter gets the fp32 model's outputs on streamed calibration chunks, the
    # record is logged, and the job run again (engine cache emptied) rebuilds the route the
    # finished search picked instead of searching again.
    image = standin_images["11"]
    search = [*gpu_path(image), "trt.strongly_typed=true", "trt.tune_build_routes=fast",
              "trt.tuning_expr='-match_ragged_mha=[on|off] -copy_ppg=[on|off]'"]
    first = run_sweep(search, tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    (run,) = jobs(tmp_path)
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert run.data.metrics["tuning_iterations"] == 3  # fast: baseline + 2 one-offs
    cmd = artifact(tmp_path, run.info.run_id, "engine/trtexec.cmd")
    assert "--tuneBuildRoutes=" in cmd and "--refPair=0" in cmd
    assert "--loadRefOutputs=" in cmd and "--tuningSearch=fast" in cmd
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (record,) = [f.path for f in client.list_artifacts(run.info.run_id, "engine")
                 if f.path.endswith(".jsonl")]
    lines = artifact(tmp_path, run.info.run_id, record).splitlines()
    assert '"tuning_expr"' in lines[0] and len(lines) == 4
    best = artifact(tmp_path, run.info.run_id, record.replace(".jsonl", ".best.json"))
    route = re.search(r'"route": "([^"]+)"', best)
    assert route is not None
    shutil.rmtree(tmp_path / "cache")  # the engine cache, not the search's record
    again = run_sweep([*search, "+force=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    rerun = max(jobs(tmp_path), key=lambda r: r.info.start_time)
    assert rerun.info.status == "FINISHED", rerun.data.tags.get("error")
    cmd = artifact(tmp_path, rerun.info.run_id, "engine/trtexec.cmd")
    assert f"--setBuildRoute={route.group(1)}" in cmd and "--tuneBuildRoutes" not in cmd
    no_containers_left(docker_client, image)
