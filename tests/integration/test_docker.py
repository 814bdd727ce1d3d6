"""The Docker path against the real dockerd: image recipe, DockerServer, containerised
builds, and the trtexec builder's container plumbing (with a stand-in trtexec, since
TensorRT cannot be installed here).

Skipped, with the reason, when no Docker daemon answers or the CPU image cannot be built.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from docker.client import DockerClient

from sweep.errors import BuildError, FlagSetError, ServerError
from sweep.flags import FlagSet
from sweep.infra.files import LABEL
from sweep.server.base import ModelRepository
from tests.support.models import tiny_monolithic_onnx
from tests.support.paths import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.integration]

JOB = f"pytest-{uuid.uuid4().hex[:8]}"  # every container of this session carries it
# The strict stand-in: trtexec's own option tables for 10.16 / 11.0 / 11.1.
STANDIN_TRTEXEC = ROOT / "tests" / "standins"


@pytest.fixture(autouse=True)
def no_leftover_containers(docker_client: DockerClient) -> Iterator[None]:
    yield
    left = docker_client.containers.list(all=True, filters={"label": f"{LABEL}.job={JOB}"})
    names = [c.name for c in left]
    for c in left:
        c.remove(force=True)
    assert not names, f"containers left behind: {names}"


def double_repository(root: Path, *, factor: float = 2.0, site_packages: str,
                      broken: bool = False) -> ModelRepository:
    """A python-backend model that multiplies a 4-float tensor by ``factor``."""
    model = root / "double"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(f'''name: "double"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "site_packages" value: {{ string_value: "{site_packages}" }} }}
''')
    (model / "1" / "model.py").write_text(f'''
import json
import site

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        if {broken!r}:
            raise RuntimeError("model initialisation broken on purpose")
        params = json.loads(args["model_config"])["parameters"]
        for path in filter(None, params["site_packages"]["string_value"].split(":")):
            site.addsitedir(path)
        import numpy as np
        self.np = np

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            y = (x * {factor!r}).astype(self.np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
        return out
''')
    return ModelRepository(path=root, entry_model="double", models=("double",),
                           configs=(model / "config.pbtxt",))


def infer(url: str, values: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(values.astype(np.float32)[None])
        out = client.infer("double", [tensor]).as_numpy("OUTPUT0")
        assert out is not None
        return out[0]
    finally:
        client.close()


X = np.array([0.5, -1.0, 3.25, 1e3], np.float32)


# -- the server --------------------------------------------------------------------------
def test_serves_over_grpc_and_leaves_nothing(cpu_image: str, docker_client: DockerClient,
                                             tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    server = DockerServer(image=cpu_image, job=JOB)
    assert server.site_packages() == "/opt/venv/lib/python3.11/site-packages"
    repo = double_repository(tmp_path / "repo", site_packages=server.site_packages())
    log = tmp_path / "tritonserver.log"
    with server.serving(repo, log) as endpoint:
        # The values, not just the status: with numpy 2 in the model's environment the
        # python backend answers with empty tensors and no error.
        np.testing.assert_array_equal(infer(endpoint.grpc_url, X), X * 2)
        assert endpoint.server == "docker" and endpoint.model_name == "double"
        assert endpoint.grpc_url.startswith("127.0.0.1:")
        (running,) = docker_client.containers.list(filters={"label": f"{LABEL}.job={JOB}"})
        attrs = running.attrs
        assert running.labels[LABEL] == "1"
        assert attrs["HostConfig"]["Privileged"] is False
        (mount,) = [m for m in attrs["Mounts"] if m["Destination"] == "/models"]
        assert mount["RW"] is False
        if attrs["HostConfig"]["NetworkMode"] != "host":
            bindings = attrs["HostConfig"]["PortBindings"]
            assert {b["HostIp"] for v in bindings.values() for b in v} == {"127.0.0.1"}
        assert attrs["Config"]["Cmd"][0] == "tritonserver"
        print(f"\nfresh container start-to-ready: {endpoint.startup_seconds:.2f} s")
    assert "successfully loaded 'double'" in log.read_text()


def test_host_network_mode(cpu_image: str, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    server = DockerServer(image=cpu_image, job=JOB, network="host")
    repo = double_repository(tmp_path / "repo", site_packages=server.site_packages())
    with server.serving(repo, tmp_path / "log") as endpoint:
        np.testing.assert_array_equal(infer(endpoint.grpc_url, X), X * 2)


def test_broken_model_is_reported_with_its_log(cpu_image: str, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    server = DockerServer(image=cpu_image, job=JOB, ready_timeout_s=60)
    repo = double_repository(tmp_path / "repo", site_packages=server.site_packages(),
                             broken=True)
    with pytest.raises(ServerError) as info, server.serving(repo, tmp_path / "log"):
        pass
    message = str(info.value)
    assert "exited before becoming ready" in message
    assert "broken on purpose" in message  # the container's own log lines, quoted
    assert info.value.log_path == tmp_path / "log"


def test_error_inside_the_block_still_removes(cpu_image: str, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    server = DockerServer(image=cpu_image, job=JOB)
    repo = double_repository(tmp_path / "repo", site_packages=server.site_packages())
    with pytest.raises(KeyError), server.serving(repo, tmp_path / "log"):
        raise KeyError("evaluation failed")
    # no_leftover_containers checks the removal


def test_port_in_use_is_a_clear_error(cpu_image: str, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = DockerServer(image=cpu_image, job=JOB, grpc_port=port)
        repo = double_repository(tmp_path / "repo", site_packages="")
        with pytest.raises(ServerError, match=f"port {port}"), \
                server.serving(repo, tmp_path / "log"):
            pass


def test_missing_image_is_not_pulled(docker_client: DockerClient, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    server = DockerServer(image="trt-sweep-cpu:no-such-tag", job=JOB)
    repo = double_repository(tmp_path / "repo", site_packages="")
    with pytest.raises(ServerError, match="does not pull") as info, \
            server.serving(repo, tmp_path / "log"):
        pass
    assert "build_image.py" in str(info.value)


def test_explicit_load_swaps_engines_in_one_container(cpu_image: str, docker_client: DockerClient,
                                                      tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    fresh = DockerServer(image=cpu_image, job=JOB)
    site = fresh.site_packages()
    repos = [double_repository(tmp_path / f"repo{k}", factor=f, site_packages=site)
             for k, f in enumerate((2.0, 3.0, 0.5))]
    fresh_blocks = []
    for k, repo in enumerate(repos[:2]):
        begin = time.perf_counter()
        with fresh.serving(repo, tmp_path / f"fresh{k}.log") as endpoint:
            infer(endpoint.grpc_url, X)
        fresh_blocks.append(time.perf_counter() - begin)

    with DockerServer(image=cpu_image, job=JOB, keep_running=True):
        ids, swaps, blocks = set(), [], []
        for k, (repo, factor) in enumerate(zip(repos, (2.0, 3.0, 0.5), strict=True)):
            # A new server object per job, as job.py makes them: the container is shared
            # by every DockerServer with the same settings.
            kept = DockerServer(image=cpu_image, job=JOB, keep_running=True)
            begin = time.perf_counter()
            with kept.serving(repo, tmp_path / f"kept{k}.log") as endpoint:
                np.testing.assert_array_equal(infer(endpoint.grpc_url, X), X * factor)
                (c,) = docker_client.containers.list(
                    filters={"label": f"{LABEL}.job={JOB}"})
                ids.add(c.id)
            blocks.append(time.perf_counter() - begin)
            swaps.append(endpoint.startup_seconds)
            assert "successfully loaded 'double'" in (tmp_path / f"kept{k}.log").read_text()
        assert len(ids) == 1, "one container served every repository"
    print(f"\nfresh container per job: {[round(b, 2) for b in fresh_blocks]} s per block; "
          f"kept container: swaps {[round(s or 0, 2) for s in swaps]} s, "
          f"blocks {[round(b, 2) for b in blocks]} s")
    # after close(): no_leftover_containers checks the container went


def test_kept_container_survives_a_broken_model(cpu_image: str, tmp_path: Path) -> None:
    from sweep.server.docker import DockerServer

    site = "/opt/venv/lib/python3.11/site-packages"
    broken = double_repository(tmp_path / "broken", site_packages=site, broken=True)
    good = double_repository(tmp_path / "good", factor=4.0, site_packages=site)
    with DockerServer(image=cpu_image, job=JOB, keep_running=True) as kept:
        with pytest.raises(ServerError, match="broken on purpose"), \
                kept.serving(broken, tmp_path / "broken.log"):
            pass
        with kept.serving(good, tmp_path / "good.log") as endpoint:
            np.testing.assert_array_equal(infer(endpoint.grpc_url, X), X * 4)


def test_cleanup_removes_every_labelled_container(cpu_image: str,
                                                  docker_client: DockerClient) -> None:
    from sweep.server.docker import cleanup

    label = f"{LABEL}.cleanup-test={uuid.uuid4().hex[:6]}"
    key, value = label.split("=")
    for _ in range(2):
        docker_client.containers.run(cpu_image, ["sleep", "60"], detach=True,
                                     labels={LABEL: "1", key: value, f"{LABEL}.job": JOB})
    assert cleanup(label=label) == 2
    assert docker_client.containers.list(all=True, filters={"label": label}) == []


# -- builds in containers ----------------------------------------------------------------
def test_containerised_emulate_build_matches_the_host(cpu_image: str, tmp_path: Path) -> None:
    from sweep.builder.container import ContainerBuilder
    from sweep.builder.emulate import EmulateBuilder

    (tmp_path / "in").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "in" / "tiny.onnx")
    flags = FlagSet.from_mapping({"precision": "fp16", "tf32": False})
    builder = ContainerBuilder("emulate", image=cpu_image, job=JOB)
    engine = builder.build(onnx_path, flags, tmp_path / "work")
    assert engine.format == "onnx_emulated" and engine.builder == "emulate"
    assert engine.path == tmp_path / "work" / "model.onnx" and engine.path.exists()
    assert engine.log_path.exists() and all(a.exists() for a in engine.artifacts)
    assert cpu_image in engine.builder_version and "ort" in engine.builder_version
    assert engine.metrics["emu_pinned_nodes"] == 0.0
    host = EmulateBuilder().build(onnx_path, flags, tmp_path / "host")
    assert engine.path.read_bytes() == host.path.read_bytes()


def test_containerised_build_keeps_error_types(cpu_image: str, tmp_path: Path) -> None:
    from sweep.builder.container import ContainerBuilder

    (tmp_path / "in").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "in" / "tiny.onnx")
    flags = FlagSet.from_mapping({"precision": "int8"})  # the emulator refuses int8
    with pytest.raises(FlagSetError, match="int8"):
        ContainerBuilder("emulate", image=cpu_image, job=JOB).build(onnx_path, flags,
                                                                    tmp_path / "work")


@pytest.fixture(scope="module")
def fake_trt_images(cpu_image: str, docker_client: DockerClient) -> Iterator[dict[str, str]]:
    """The CPU image plus a stand-in trtexec at NGC's path, as TensorRT 10.9 and 11.0."""
    tags = {}
    for name, version in (("10", "100900"), ("11", "110000")):
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy(STANDIN_TRTEXEC / "trtexec.py", Path(ctx) / "trtexec")
            shutil.copy(STANDIN_TRTEXEC / "trtexec_options.json", Path(ctx))
            (Path(ctx) / "Dockerfile").write_text(
                f"FROM {cpu_image}\n"
                "COPY trtexec trtexec_options.json /usr/src/tensorrt/bin/\n"
                "RUN chmod 755 /usr/src/tensorrt/bin/trtexec\n"
                f"ENV FAKE_TRT_VERSION={version}\n")
            tag = f"trt-sweep-fake-trtexec:{name}-{JOB}"
            docker_client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, pull=False,
                                       labels={LABEL: "1"})
            tags[name] = tag
    yield tags
    for tag in tags.values():
        docker_client.images.remove(tag, force=True)


def test_trtexec_builder_runs_the_command_list(fake_trt_images: dict[str, str],
                                               tmp_path: Path) -> None:
    from sweep.builder.trtexec import TrtexecBuilder

    (tmp_path / "in").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "in" / "tiny.onnx")
    flags = FlagSet.from_mapping({
        "precision": "bf16", "precision_constraints": "obey", "tf32": False, "opt_level": 0,
        "layer_precisions": {"LogSoftmax": "fp32", "MatMul": "fp32"}})
    builder = TrtexecBuilder(image=fake_trt_images["10"], gpus=None, job=JOB,
                             timing_cache_dir=tmp_path / "tcache")
    engine = builder.build(onnx_path, flags, tmp_path / "work")
    assert engine.format == "tensorrt_plan" and engine.builder == "trtexec"
    # The stand-in's plan: its header, then the ONNX it was built from.
    plan = engine.path.read_bytes()
    assert plan.startswith(b"TRT-SWEEP-STANDIN-PLAN\n")
    assert plan.endswith(onnx_path.read_bytes())
    assert engine.builder_version.startswith("TensorRT 10.9.0 (trt-sweep-fake-trtexec:")
    assert engine.metrics["trt_throughput_qps"] == 130.298
    assert engine.metrics["trt_throughput_items_per_s"] == pytest.approx(130.298 * 16)
    assert engine.metrics["trt_latency_p99_ms"] == 12.9675
    assert engine.metrics["trt_build_s"] == 1.5
    # One timing cache per TensorRT version and GPU model (trtexec takes any without a word).
    from sweep.builder.cache import timing_cache_name
    from sweep.infra.device import host_device

    cache_name = timing_cache_name("10.9.0", host_device())
    argv = json.loads((tmp_path / "work" / "argv.json").read_text())
    assert argv == builder.command(onnx_path, flags, (10, 9, 0), f"/cache/{cache_name}")[1:]
    assert ("--layerPrecisions=logsoftmax:fp32,logsoftmax_*:fp32,matmul:fp32,matmul_*:fp32"
            in argv)
    assert [p.name for p in (tmp_path / "tcache").iterdir()] == [cache_name]
    assert (tmp_path / "work" / "layers.json").exists()
    log = engine.log_path.read_text()
    assert "the ONNX folder is read-only" in log
    assert not (tmp_path / "in" / "written-by-trtexec").exists()


def test_trtexec_builder_refuses_removed_flags(fake_trt_images: dict[str, str],
                                              tmp_path: Path) -> None:
    from sweep.builder.trtexec import TrtexecBuilder

    (tmp_path / "in").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "in" / "tiny.onnx")
    builder = TrtexecBuilder(image=fake_trt_images["11"], gpus=None, job=JOB)
    with pytest.raises(FlagSetError, match="no longer supported"):
        builder.build(onnx_path, FlagSet.from_mapping({"precision": "fp16"}),
                      tmp_path / "work")
    assert not (tmp_path / "work" / "argv.json").exists(), "refused before any build"
    typed = builder.build(onnx_path, FlagSet.from_mapping({"strongly_typed": True}),
                          tmp_path / "typed")
    assert "--stronglyTyped" not in json.loads((tmp_path / "typed" / "argv.json").read_text())
    assert typed.runtime["tensorrt_version"] == "11.0.0"


def test_trtexec_failure_and_timeout(fake_trt_images: dict[str, str], tmp_path: Path) -> None:
    from sweep.builder.trtexec import TrtexecBuilder

    (tmp_path / "in").mkdir()
    onnx_path = tiny_monolithic_onnx(tmp_path / "in" / "tiny.onnx")
    with pytest.raises(BuildError, match="exited with code 3") as info:
        TrtexecBuilder(image=fake_trt_images["10"], gpus=None, job=JOB).build(
            onnx_path, FlagSet.from_mapping({"extra": {"failWith": "3"}}), tmp_path / "fail")
    assert "failing on purpose" in str(info.value)
    assert info.value.log_path == tmp_path / "fail" / "build.log"
    slow = TrtexecBuilder(image=fake_trt_images["10"], gpus=None, job=JOB, timeout_s=4,
                          inference={"duration_s": 120})
    begin = time.perf_counter()
    with pytest.raises(BuildError, match="did not finish within 4 s"):
        slow.build(onnx_path, FlagSet(), tmp_path / "slow")
    assert time.perf_counter() - begin < 60


def test_the_version_probe_leaves_nothing_in_the_working_directory(
        fake_trt_images: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep.builder.trtexec import TrtexecBuilder

    # The engine cache asks for the version before any build, with no job folder to log to.
    monkeypatch.chdir(tmp_path)
    version = TrtexecBuilder(image=fake_trt_images["11"], gpus=None, job=JOB).version()
    assert version.startswith("TensorRT 11.0.0 (")
    assert list(tmp_path.iterdir()) == []


def test_trtexec_missing_from_image(cpu_image: str, tmp_path: Path) -> None:
    from sweep.builder.trtexec import TrtexecBuilder

    with pytest.raises(BuildError, match="trtexec was not found"):
        TrtexecBuilder(image=cpu_image, gpus=None, job=JOB).version()
