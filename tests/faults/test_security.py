"""No shell strings built from user input: every process and container the project starts
gets an argument list. Read from the source (the AST, so comments and docstrings that
mention ``shell=True`` do not count).

Other security rows of the matrix live with the code they check: the container's isolation
in test_interrupts.py (a sweep's own Triton container) and
tests/integration/test_docker.py; promote's root in tests/integration/test_promote.py;
credentials through a whole sweep in test_store_faults.py. Here: a password of any
characters hidden in every message and saved config, and the tools that read the store
failing in seconds on a tracking server that is down.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweep.tracking.store import redact, remember_secret
from tests.faults.conftest import Row, run_sweep
from tests.support.paths import ROOT

# What runs on users' machines: the package, the image recipe, the demo tools, benchmarks.
SCANNED = ("sweep", "docker", "demo", "bench", "scripts")
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput"), ("os", "execlp"), ("os", "spawnlp")}
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "zsh", "dash"}
# Keyword arguments that docker-py turns into a container's command: a str there would be
# split by the daemon (or run by a shell in the image's entrypoint).
COMMAND_KWARGS = {"command", "entrypoint"}


def _name(node: ast.AST) -> tuple[str, ...]:
    if isinstance(node, ast.Attribute):
        return (*_name(node.value), node.attr)
    if isinstance(node, ast.Name):
        return (node.id,)
    return ()


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr | ast.BinOp) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str))


def shell_uses(path: Path) -> list[str]:
    """Every place in one file that hands a string to a shell."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        where = f"{shown}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name[-2:] in SHELL_CALLS:
                found.append(f"{where}: {'.'.join(name)}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    found.append(f"{where}: shell={ast.unparse(kw.value)}")
                if kw.arg in COMMAND_KWARGS and _is_text(kw.value):
                    found.append(f"{where}: {kw.arg}= a string, not a list")
        if isinstance(node, ast.List | ast.Tuple) and len(node.elts) >= 2:
            first, second = node.elts[0], node.elts[1]
            if isinstance(first, ast.Constant) and first.value in SHELLS and \
                    isinstance(second, ast.Constant) and second.value == "-c":
                found.append(f"{where}: [{first.value!r}, '-c', ...]")
    return found


def _sources() -> list[Path]:
    return sorted(p for top in SCANNED if (ROOT / top).is_dir()
                  for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("import os, subprocess\n"
                   "def f(x):\n"
                   "    os.system(f'rm {x}')\n"
                   "    subprocess.run(x, shell=True)\n"
                   "    subprocess.run(['bash', '-c', f'echo {x}'])\n"
                   "    client.containers.run('img', command=f'trtexec {x}')\n"
                   "    subprocess.run(['trtexec', f'--onnx={x}'], shell=False)\n")
    assert len(shell_uses(bad)) == 4, shell_uses(bad)


@pytest.mark.fault("shell strings built from user input",
                   "none: processes and containers get argument lists")
def test_no_shell_strings(row: Row) -> None:
    sources = _sources()
    found = [hit for path in sources for hit in shell_uses(path)]
    assert found == [], found
    row.outcome(f"{len(sources)} files under {', '.join(SCANNED)}: no shell=True, os.system, "
                "os.popen, [sh, -c, ...] or string container command")
    row.cleanup("n/a (static check)")


# -- credentials ----------------------------------------------------------------------------

# Each piece of a password is a word found nowhere else, so a piece left in the clear
# (the part after a raw "@", the part before a "/") is found by name.
PIECES = ("Xq7k", "Zr9m", "Wp3v", "Lk5t", "Mn8d")
PASSWORDS = {"at-colon-percent-paren": "Xq7k@Zr9m:Wp3v%40Lk5t(Mn8d",
             "slash": "Xq7k/Zr9m@Wp3v:Lk5t%40Mn8d"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def _leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


@pytest.mark.parametrize("spelling", ["plain", "hydra-escaped", "yaml-quoted", "json"])
@pytest.mark.parametrize("name", sorted(PASSWORDS))
def test_redact_hides_every_piece_of_a_password(name: str, spelling: str) -> None:
    uri = f"http://sweeper:{PASSWORDS[name]}@127.0.0.1:5000"
    text = {"plain": f"uri: {uri}",
            "hydra-escaped": "- tracking.uri=" + uri.replace(":", "\\:"),
            "yaml-quoted": f"uri: '{uri}'",
            "json": f'{{"uri": "{uri}", "contact": "ops@example.org"}}'}[spelling]
    assert _leaks(redact(text)) == [], redact(text)
    assert "127.0.0.1" in redact(text)
    if spelling == "json":
        assert "ops@example.org" in redact(text)  # another word is left alone


def test_a_remembered_password_is_hidden_outside_a_uri() -> None:
    remember_secret("http://sweeper:Qz4(pa ss'w@127.0.0.1:5000")
    assert redact("password: 'Qz4(pa ss''w' and Qz4%28pa%20ss%27w") == \
        "password: '***' and ***"


@pytest.mark.integration
@pytest.mark.fault("a password with @ : / %40 in tracking.uri (server down)",
                   "exit 2 in seconds; no piece of the password in the terminal, the log or "
                   "the saved .hydra configs")
@pytest.mark.parametrize("name", sorted(PASSWORDS))
def test_password_of_any_characters_in_messages_and_configs(name: str, tmp_path: Path,
                                                            row: Row) -> None:
    uri = f"http://sweeper:{PASSWORDS[name]}@127.0.0.1:{_closed_port()}"
    # A single run: Hydra saves .hydra/*.yaml before the job, which then meets the store.
    sweep = run_sweep(["dataset=demo_tiny", "dataset.limit=1", f"tracking.uri='{uri}'",
                       f"tracking.artifact_root={tmp_path / 'artifacts'}"],
                      tmp_path, tracking=False, timeout=120)
    assert sweep.proc.returncode == 2, (sweep.proc.returncode, sweep.stderr[-3000:])
    assert sweep.seconds < 60, sweep.seconds
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    saved = [p for p in files if p.parent.name == ".hydra"]
    assert len(saved) == 3, files  # config, hydra, overrides
    assert all("***@" in p.read_text() for p in saved)
    leaks = {str(p.relative_to(tmp_path)): _leaks(p.read_text(errors="replace"))
             for p in files}
    assert {k: v for k, v in leaks.items() if v} == {}
    assert _leaks(sweep.output) == [], sweep.output
    message = sweep.stderr.strip().splitlines()[-1]
    row.outcome(f"exit 2 in {sweep.seconds:.1f} s: {message[:160]!r}; no piece of the "
                f"password in stdout, stderr or {len(files)} files ({len(saved)} .hydra)")
    row.cleanup("no server started; nothing but the run folder written")


TOOLS = {"serve": ["-m", "sweep.serve", "0123456789abcdef"],
         "promote": ["-m", "sweep.promote", "--dry-run"]}


@pytest.mark.integration
@pytest.mark.fault("python -m sweep.serve / sweep.promote, tracking server down, "
                   "http://user:pw@ in --tracking-uri",
                   "exit 2 in seconds (not MLflow's 4 minutes of retries), the server named "
                   "by host and port, the password not printed")
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tools_fail_fast_on_a_tracking_server_that_is_down(tool: str, row: Row) -> None:
    port = _closed_port()
    uri = f"http://sweeper:{PASSWORDS['at-colon-percent-paren']}@127.0.0.1:{port}"
    started = time.monotonic()
    done = subprocess.run([sys.executable, *TOOLS[tool], "--tracking-uri", uri], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, (done.returncode, output[-3000:])
    assert seconds < 30, seconds
    assert f"the MLflow tracking server at 127.0.0.1:{port} (tracking.uri) does not answer " \
           "(Connection refused)" in output, output[-3000:]
    assert _leaks(output) == [], output
    row.outcome(f"exit 2 in {seconds:.1f} s: 'the MLflow tracking server at 127.0.0.1:{port} "
                "(tracking.uri) does not answer (Connection refused)'; password not printed")
    row.cleanup("n/a (nothing started)")
