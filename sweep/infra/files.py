"""Files and names every part shares: the project root, content digests, log tails, and
the label that marks every process and container the sweep starts."""

from __future__ import annotations

import hashlib
from pathlib import Path

# The checkout (or installed tree) that holds conf/, triton_templates/ and demo/.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Every process and container we start carries this label (or environment variable), so a
# clean-up can find exactly ours and nothing else.
LABEL = "trt-sweep"


def project_path(value: str | Path) -> Path:
    """Config paths are relative to the working directory, else to the project root (so the
    bundled demo is found from anywhere)."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (PROJECT_ROOT / path).resolve()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (engines can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
