"""``python -m tests.faults.matrix [PYTEST ARGS]``: run the fault suite and print the matrix.

One row per test of tests/faults (``@pytest.mark.fault(name, expected)``): the fault, what
must happen, what the test saw (``row.outcome``), the clean-up it checked (``row.cleanup``)
and the result. Rows that other suites already prove (REFERENCED) run from there and are
listed too, so the matrix is the whole reliability story in one table. Exit status:
pytest's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tests.support.paths import ROOT

HERE = Path(__file__).resolve().parent

# Proven by other suites; run from there and listed with their own name.
REFERENCED: dict[str, tuple[str, str, str]] = {
    "tests/integration/test_promote.py::test_a_target_outside_the_repository_root_is_refused":
        ("promote: a target outside its root", "refused, nothing written outside",
         "'../outside' and a symlink out: exit 2, 'outside the repository root', the outside "
         "folder stays empty"),
    "tests/integration/test_docker.py::test_serves_over_grpc_and_leaves_nothing":
        ("container isolation (DockerServer)",
         "not privileged, /models read-only, ports on 127.0.0.1",
         "HostConfig: Privileged false, /models RW false, PortBindings on 127.0.0.1, Cmd an "
         "argument list"),
    # Several hosts, rehearsed (python -m sweep.cluster: real PostgreSQL, MLflow server, Ray
    # nodes); one cluster serves the rows below.
    "tests/integration/test_cluster.py::test_a_relative_path_is_refused_before_any_job":
        ("multi-host sweep: a relative path", "refused before any job, the setting named",
         "exit 2 naming hydra.sweep.dir and builder.cache_dir; no experiment created"),
    "tests/integration/test_cluster.py::"
    "test_four_jobs_land_on_both_workers_and_share_the_cache":
        ("multi-host sweep: two nodes building one key at once", "one entry, both FINISHED",
         "each flag set's two jobs started together on the two workers: one entry per key, "
         "the loser records cache_lost_race, 4 jobs FINISHED"),
    "tests/integration/test_cluster.py::test_a_tracking_server_restart_mid_sweep_loses_nothing":
        ("multi-host sweep: the tracking server restarted mid-job",
         "logging retried, no run left RUNNING",
         "MLflow's HTTP retries rode out the outage; every run FINISHED, exit 0"),
    "tests/integration/test_cluster.py::test_a_worker_node_killed_mid_job":
        ("multi-host sweep: a worker node killed mid-job",
         "retried on another node, the dead attempt FAILED with the reason",
         "the retry FINISHED on the other node; the dead run FAILED, retried_by set; exit 0"),
    "tests/integration/test_cluster.py::test_a_job_lost_after_ray_s_retries_fails_alone":
        ("multi-host sweep: a node killed with no retry left", "that job FAILED, the sweep "
         "goes on", "NodeDiedError in the run's error tag, the other job FINISHED, exit 3"),
    **{f"tests/integration/test_local_server.py::"
       f"test_a_request_that_fails_in_a_batch_fails_alone[{state}]":
       (f"a request that makes the model fail, batched with good ones (server.state={state},"
        " default scheduling)",
        "that request gets its own error, the others their results; the server lives",
        "6 rounds of 12 concurrent requests, one with an out-of-range Gather index: only it "
        "failed ('indices element out of data bounds'), batches formed (executions < "
        "inferences), server live after; the old templates died with SIGSEGV")
       for state in ("client", "server")},
    "tests/integration/test_cluster.py::test_postgres_takes_no_connection_without_its_password":
        ("rehearsal cluster: PostgreSQL reached without its password (trust auth)",
         "refused over TCP and the socket, even as the postgres user",
         "no password / a wrong one: 'no password supplied' / 'password authentication "
         "failed' (scram-sha-256); the password only in a 0600 file, not in cluster.json "
         "(0600), a log or the MLflow server's command line"),
    "tests/integration/test_cluster.py::test_the_ray_head_listens_on_loopback_only":
        ("rehearsal cluster: the Ray head reachable from the network",
         "every socket of the head on a loopback address",
         "GCS, raylet, agents and metrics of the head: all listening sockets on 127.0.0.1 "
         "(ray start alone used the host's outward address or every interface)"),
}


@dataclass
class Row:
    fault: str
    expected: str
    outcome: str = ""
    cleanup: str = ""
    result: str = "not run"
    seconds: float = 0.0


class Collector:
    """A pytest plugin: one Row per test, filled from its marker and user_properties."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def _row(self, item: pytest.Item) -> Row | None:
        if item.nodeid in self.rows:
            return self.rows[item.nodeid]
        marker = item.get_closest_marker("fault")
        if marker is not None:
            fault, expected = marker.args[0], marker.args[1]
            callspec = getattr(item, "callspec", None)
            if callspec is not None:
                fault = f"{fault} [{callspec.id}]"
        elif item.nodeid in REFERENCED:
            fault, expected, seen = REFERENCED[item.nodeid]
            self.rows[item.nodeid] = Row(f"{fault} (in {item.nodeid})", expected, seen,
                                         "that suite's own")
            return self.rows[item.nodeid]
        else:
            return None
        self.rows[item.nodeid] = Row(fault, expected)
        return self.rows[item.nodeid]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[Any]
                                  ) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        row = self._row(item)
        if row is None:
            return
        for key, value in report.user_properties:
            if key in ("outcome", "cleanup"):
                setattr(row, key, str(value))
        row.seconds += report.duration
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                row.result = f"SKIP {reason.removeprefix('Skipped: ')}"
            elif report.failed:
                message = getattr(report.longrepr, "reprcrash", None)
                text = message.message if message is not None else str(report.longrepr)
                row.result = f"FAIL ({report.when}): {text.splitlines()[0][:200]}"
            elif report.when == "call":
                row.result = "pass"


def render(rows: list[Row], console: Console) -> None:
    table = Table(title="trt-sweep fault matrix", show_lines=True, expand=True)
    for name, ratio in (("#", 1), ("fault", 5), ("expected", 6), ("outcome (observed)", 9),
                        ("clean-up (checked)", 6), ("result", 3)):
        table.add_column(name, ratio=ratio, overflow="fold")
    for i, row in enumerate(rows, 1):
        style = "green" if row.result == "pass" else "yellow" if row.result.startswith(
            "SKIP") else "red"
        table.add_row(str(i), escape(row.fault), escape(row.expected), escape(row.outcome),
                      escape(row.cleanup),
                      f"[{style}]{escape(row.result)}[/] ({row.seconds:.0f} s)")
    console.print(table)


def main(argv: list[str]) -> int:
    collector = Collector()
    started = time.perf_counter()
    targets = [str(HERE), *(str(ROOT / node) for node in REFERENCED)]
    code = pytest.main(["-p", "no:cacheprovider", "-q", "-p", "no:warnings", *targets,
                        *argv], plugins=[collector])
    console = Console(width=max(Console().width, 200))
    render(list(collector.rows.values()), console)
    passed = sum(r.result == "pass" for r in collector.rows.values())
    console.print(f"{passed}/{len(collector.rows)} rows pass; "
                  f"{time.perf_counter() - started:.0f} s in all")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
