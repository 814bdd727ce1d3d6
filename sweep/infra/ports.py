"""Free TCP ports for a server the sweep starts, and the one check of a user's own port."""

from __future__ import annotations

import socket

from sweep.errors import ServerError


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def pick_ports(host: str, grpc_port: int | None, http_port: int | None) -> tuple[int, int]:
    """(gRPC, HTTP) ports on ``host``: the ones the user set (refused at once when taken,
    naming the setting) or free ones, never the same twice."""
    for wanted in (grpc_port, http_port):
        if wanted is not None and port_in_use(wanted, host):
            raise ServerError(
                f"port {wanted} on {host} is already in use. Free it, or leave "
                "server.grpc_port/http_port unset to let the sweep pick free ports.")
    grpc = grpc_port or free_port(host)
    http = http_port or free_port(host)
    while http == grpc:
        http = free_port(host)
    return grpc, http
