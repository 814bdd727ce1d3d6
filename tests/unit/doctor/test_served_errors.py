"""The doctor tells "no server answers" from a server's refusal by the call's gRPC status,
not by the wording of its message; real gRPC calls to a closed port and to a listener that
never speaks (no Triton needed)."""

from __future__ import annotations

import re
import socket

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sweep.doctor.served import TritonTarget
from sweep.errors import DoctorError


def _target(url: str) -> TritonTarget:
    target = object.__new__(TritonTarget)  # no connect: only _call is under test
    target.url, target.timeout_s = url, 1.0
    return target


def _raises(status: str, message: str):
    def call(**_: object) -> None:
        raise InferenceServerException(msg=message, status=status)

    return call


def test_the_status_decides_not_the_message():
    target = _target("127.0.0.1:1")
    with pytest.raises(DoctorError, match=re.escape("no Triton server answers at 127.0.0.1:1")):
        target._call("the liveness check", _raises("StatusCode.UNAVAILABLE", "Socket closed"))
    with pytest.raises(DoctorError, match="no Triton server answers"):
        target._call("the liveness check", _raises("StatusCode.DEADLINE_EXCEEDED", "late"))
    # A server that answers, with words the old text match took for "down".
    with pytest.raises(DoctorError) as exc:
        target._call("model 'm'", _raises("StatusCode.INTERNAL",
                                          "backend unavailable: failed to connect to stub"))
    assert str(exc.value) == ("model 'm' at 127.0.0.1:1 failed: backend unavailable: failed "
                              "to connect to stub")


def _no_server(listen: bool) -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen()  # accepts, never speaks gRPC: every call runs into its deadline
    return sock, f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("listen", [False, True], ids=["closed port", "silent listener"])
def test_real_calls_no_server_answers(listen):
    sock, url = _no_server(listen)
    if not listen:
        sock.close()
    client = grpcclient.InferenceServerClient(url)
    try:
        with pytest.raises(DoctorError, match=re.escape(f"no Triton server answers at {url}")):
            _target(url)._call("the liveness check", client.is_server_live)
    finally:
        client.close()
        sock.close()
