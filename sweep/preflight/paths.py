"""The paths a sweep over several hosts must have absolute: a job runs in its worker's
own working directory, so a relative path (or ``~``, each host's own home) lands on that
worker's disk, where neither the head nor the other hosts ever look. Refused before any
job starts, each setting named."""

from __future__ import annotations

from collections.abc import Mapping

from sweep.errors import ConfigError

# A SQLite store named by a relative path: sqlite:///relative/path (three slashes, no fourth).
_SQLITE = "sqlite:///"


class RelativePathError(ConfigError):
    """A multi-host sweep was given a path that each host would resolve on its own disk."""


def _problem(setting: str, value: str) -> str | None:
    if setting == "tracking.uri":
        if value.startswith(_SQLITE) and not value.startswith(_SQLITE + "/"):
            return (f"{setting}={value} is a SQLite file relative to each host's working "
                    "directory: use a tracking server (tracking.uri=http://HEAD:5000)")
        return None
    if "://" in value or value.startswith("mlflow-artifacts:"):
        return None  # a URI: the same place for every host
    if value.startswith("~"):
        return (f"{setting}={value} expands to each host's own home folder: use an absolute "
                "path on a mount every host sees")
    if not value.startswith("/"):
        return (f"{setting}={value} is relative: each worker would resolve it in its own "
                "working directory; use an absolute path on a mount every host sees")
    return None


def check_multihost(paths: Mapping[str, str | None]) -> None:
    """Raise ``RelativePathError`` naming every setting in ``paths`` (setting -> value;
    None: unset) that would not mean the same place on every host."""
    problems = [p for setting, value in paths.items() if value
                for p in [_problem(setting, str(value))] if p]
    if problems:
        raise RelativePathError(
            "a sweep over several hosts (hydra/launcher joins a Ray cluster) refuses paths "
            "that are not the same on every host; no job was started: "
            + "; ".join(problems) + ".")
