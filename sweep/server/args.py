"""tritonserver's command line: one builder for the local process and the container, so
both always start Triton the same way."""

from __future__ import annotations


def tritonserver_args(*, repository: str, grpc_port: int, http_port: int,
                      binary: str = "tritonserver", address: str | None = None,
                      explicit: bool = False, log_verbose: int = 0,
                      backend_directory: str | None = None) -> list[str]:
    """The argument list (never a shell string). ``address``: bind gRPC and HTTP to it
    (loopback for a local server or host networking; a container on a bridge listens on
    its own interface). ``explicit``: models are loaded and swapped over gRPC, as a server
    kept across a sweep's jobs needs."""
    args = [binary, f"--model-repository={repository}"]
    if backend_directory is not None:
        args.append(f"--backend-directory={backend_directory}")
    if address is not None:
        args += [f"--grpc-address={address}", f"--http-address={address}"]
    args += [f"--grpc-port={grpc_port}", f"--http-port={http_port}",
             "--allow-metrics=false", "--allow-gpu-metrics=false",
             "--exit-on-error=true", "--strict-readiness=true",
             # Our configs declare every tensor; without this flag Triton starts a throw-away
             # python stub per model just to auto-complete the config (1.7 s of start-up).
             "--disable-auto-complete-config", f"--log-verbose={log_verbose}"]
    if explicit:
        args.append("--model-control-mode=explicit")
    return args
