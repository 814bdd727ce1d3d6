"""The local tritonserver: loopback only, and nothing left behind, not even the python
backend's shared memory when the server was killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sweep.build.base import Engine
from sweep.deploy.local import LocalServer, _stub_shm_regions
from sweep.deploy.repository import ServingOptions, render
from sweep.errors import ServerError
from sweep.flags import FlagSet
from sweep.model import ModelInterface, StatePair
from tests.integration.conftest import our_processes

pytestmark = pytest.mark.integration


def test_command_binds_loopback_and_skips_auto_complete(tmp_path: Path):
    command = LocalServer(cache_dir=str(tmp_path)).command(tmp_path, 8001, 8000)
    assert "--grpc-address=127.0.0.1" in command and "--http-address=127.0.0.1" in command
    assert "--disable-auto-complete-config" in command


def test_killed_server_leaves_no_process_and_no_shared_memory(tiny_onnx: Path,
                                                              tmp_path: Path):
    model = ModelInterface(name="tiny", onnx_path=tiny_onnx, contract="monolithic",
                           audio_input="signal", logprobs_output="logprobs",
                           states=(StatePair("state", "state_next"),))
    engine = Engine(path=tiny_onnx, format="onnx_emulated", flags=FlagSet(), builder="none",
                    builder_version="0", build_seconds=0.0, log_path=tiny_onnx)
    server = LocalServer()
    repository = render(model, engine, tmp_path / "repo", site_packages=server.site_packages(),
                        options=ServingOptions(instances=2))
    regions: list[Path] = []
    with pytest.raises(ServerError, match="killed by signal SIGKILL"), \
            server.serving(repository, tmp_path / "server.log") as endpoint:
        assert endpoint.startup_seconds > 0
        pid = next(p for p in our_processes()
                   if "tritonserver" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
                   and str(repository.path) in Path(f"/proc/{p}/cmdline").read_text(
                       errors="ignore"))
        regions = _stub_shm_regions(os.getpgid(pid))
        assert len(regions) == 2 and all(r.exists() for r in regions)
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert regions and not any(r.exists() for r in regions)
    assert our_processes() == []
