"""No shell strings built from user input: every process and container the project starts
gets an argument list. Read from the source (the AST, so comments and docstrings that
mention ``shell=True`` do not count).

Other security rows of the matrix live with the code they check: the container's isolation
in test_interrupts.py (a sweep's own Triton container) and
tests/integration/test_docker.py; promote's root in tests/integration/test_promote.py;
credentials in test_store_faults.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.faults.conftest import Row
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
