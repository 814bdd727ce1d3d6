"""DockerServer and the docker plumbing without a daemon: arguments, GPU requests, the
no-daemon error. Everything that needs dockerd is in tests/integration/test_docker.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import DockerUnavailableError, ServerError
from sweep.infra.containers import gpu_requests, gpu_ulimits, labels
from sweep.infra.files import LABEL
from sweep.server.base import ModelRepository
from sweep.server.docker import DockerServer, error_lines, server_command


def test_server_command_is_a_list_of_single_arguments() -> None:
    cmd = server_command(grpc_port=8001, http_port=8000)
    assert cmd[:2] == ["tritonserver", "--model-repository=/models"]
    assert "--grpc-port=8001" in cmd and "--http-port=8000" in cmd
    assert "--exit-on-error=true" in cmd and "--strict-readiness=true" in cmd
    assert not any(" " in a for a in cmd)
    host = server_command(grpc_port=1, http_port=2, address="127.0.0.1", explicit=True)
    assert "--grpc-address=127.0.0.1" in host and "--http-address=127.0.0.1" in host
    assert host[-1] == "--model-control-mode=explicit"


@pytest.mark.parametrize(("gpus", "count", "ids"), [
    (None, None, None), ("none", None, None), ([], None, None),
    ("all", -1, []), (0, 0, ["0"]), ([0, 2], 0, ["0", "2"]), ("1,3", 0, ["1", "3"])])
def test_gpu_requests(gpus: object, count: int | None, ids: list[str] | None) -> None:
    requests = gpu_requests(gpus)  # type: ignore[arg-type]
    if count is None:
        assert requests == [] and gpu_ulimits(gpus) is None  # type: ignore[arg-type]
        return
    (request,) = requests
    assert request["Capabilities"] == [["gpu"]]
    assert request["Count"] == count
    assert request["DeviceIDs"] == ids
    assert {u["Name"] for u in gpu_ulimits(gpus) or []} == {"memlock", "stack"}  # type: ignore[arg-type]


def test_labels_carry_the_project_label() -> None:
    out = labels("job-7", kind="tritonserver")
    assert out[LABEL] == "1" and out[f"{LABEL}.job"] == "job-7"
    assert out[f"{LABEL}.kind"] == "tritonserver"


def test_no_daemon_is_reported_before_any_work(tmp_path: Path) -> None:
    server = DockerServer(docker_base_url=f"unix://{tmp_path}/none.sock")
    repo = ModelRepository(tmp_path, "model", ("model",), ())
    with pytest.raises(DockerUnavailableError, match="dockerd") as info, \
            server.serving(repo, tmp_path / "log"):
        pass
    assert "docker` group" in str(info.value) or "DOCKER_HOST" in str(info.value)
    assert not (tmp_path / "log").exists()


def test_unknown_network_mode() -> None:
    with pytest.raises(ServerError, match="network"):
        DockerServer(network="overlay")


def test_error_lines_find_the_cause_above_the_status_table(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("\n".join([
        'I1125 08:26:14 1 server.cc:1] "starting"',
        'E1125 08:26:14 6 server.cc:241] "CudaDriverHelper has not been initialized."',
        'E1125 08:26:16 6 model_lifecycle.cc:642] "failed to load \'double\': RuntimeError"',
        "| double | 1       | UNAVAILABLE: Internal: RuntimeError: broken |",
        *[f"I1125 shutdown chatter {i}" for i in range(40)],
        "error: creating server: Internal - failed to load all models",
    ]))
    found = error_lines(log)
    assert found[0].startswith("E1125") and "failed to load" in found[0]
    assert any("UNAVAILABLE" in line for line in found)
    assert found[-1].startswith("error:")
    assert not any("CudaDriverHelper" in line for line in found)
