"""The MLflow UI shows a real sweep: `mlflow server` on the sweep's store, the experiment's
runs page in headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

The screenshot goes to $TRT_SWEEP_SCREENSHOT_DIR (else the test's tmp folder); its path is
written to the terminal report so CI logs show where it is.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from sweep.infra.ports import free_port
from sweep.tracking import tags as tag
from tests.support.paths import ROOT
from tests.support.sweep import run_sweep
from tests.support.tracking import experiment_id

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

REGISTERED = "trt-sweep-ui"
# MLflow 3.17's UI picks the experiment page by its workflow switch (GenAI / Model
# training, kept in the browser, GenAI by default) before the experiment's kind tag; this
# parameter is what the switch sets. README's link carries it.
ML = "workflowType=machine_learning"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="headless Chromium is not installed: apt-get install chromium "
                              "chromium-driver (Debian), as .ci/run does"),
]
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is not installed: pip install -e '.[dev]'")

# Chromium as a quiet, throw-away browser: no sandbox (root in CI), no GPU, no network
# traffic of its own, a fresh profile per run.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1800,900")


@pytest.fixture(scope="module")
def mlflow_ui(tmp_path_factory: pytest.TempPathFactory, demo_onnx: Path
              ) -> Iterator[tuple[Path, str]]:
    """A real sweep's store, and `mlflow server` on it: (store folder, URL)."""
    tmp = tmp_path_factory.mktemp("ui-sweep")
    uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
    (tmp / "mlruns").mkdir()
    # The schema exists before either process opens the store, so the server can start
    # (about 10 s) while the sweep runs without both creating tables at once.
    MlflowClient(uri).search_experiments()
    port = free_port()
    log_path = tmp / "mlflow-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--backend-store-uri", uri],
            cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        proc = run_sweep(["-m", "trt.precision=fp32,bf16", "dataset=demo_tiny",
                          "dataset.limit=2"], tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Registered (no install): the version's source is the job's LoggedModel.
        promoted = subprocess.run([sys.executable, "-m", "sweep.promote", "--tracking-uri", uri,
                                   "--name", REGISTERED], cwd=ROOT, capture_output=True,
                                  text=True, timeout=120)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer {url}/health:\n"
                            + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield tmp, url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chrome]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """A line in pytest's terminal output even under -q and output capture (CI's log)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


def _show_columns(driver: Chrome, names: tuple[str, ...]) -> None:
    """Tick columns in the runs table's "Columns" menu (metrics are hidden by default)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    (button,) = [b for b in driver.find_elements(By.TAG_NAME, "button")
                 if b.text.strip() == "Columns"]
    button.click()
    for name in names:
        driver.find_element(By.XPATH, f"//span[normalize-space(text())='{name}']").click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def test_the_experiment_page_shows_the_sweep_runs_and_their_wer(
        mlflow_ui: tuple[Path, str], browser: Chrome, tmp_path: Path,
        request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, mlflow_url = mlflow_ui
    client = MlflowClient(f"sqlite:///{store}/mlruns/mlflow.db")
    exp_id = experiment_id(client)
    jobs = {r.info.run_name: r.data.metrics["wer"] for r in client.search_runs(
        [exp_id], f"tags.`{tag.KIND}` = 'job'")}
    assert set(jobs) == {"fp32-o3", "bf16-o3"}

    # MLflow 3 opens an experiment on its GenAI overview, and nests jobs under the parent
    # run: the runs page with a metric filter lists the jobs flat.
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}/runs"
                "?searchFilter=metrics.wer%20%3E%3D%200&orderByKey=metrics.%60wer%60"
                "&orderByAsc=true")
    screenshot = Path(os.environ.get("TRT_SWEEP_SCREENSHOT_DIR") or tmp_path) / "mlflow_ui.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        WebDriverWait(browser, 45).until(
            lambda d: all(name in d.find_element(By.TAG_NAME, "body").text for name in jobs))
        for close in browser.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
            close.click()  # the assistant side panel would hide the table's columns
        _show_columns(browser, ("wer", "latency_p99_ms", "trt.precision"))
        WebDriverWait(browser, 15).until(lambda d: "wer" in d.execute_script(
            "return document.querySelector('.ag-header').innerText").split())
        # ag-grid renders the pinned run-name column and the others as separate row
        # elements; row-index joins them back into one line per run.
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll('.ag-row'))"
            ".map(r => [r.getAttribute('row-index'), r.innerText])")
    finally:
        browser.save_screenshot(str(screenshot))
        record_property("screenshot", str(screenshot))
        _report(request, f"MLflow UI screenshot: {screenshot}")

    rows: dict[str, str] = {}
    for index, text in cells:
        rows[index] = rows.get(index, "") + "\n" + text
    for name, wer in jobs.items():
        (row,) = [r for r in rows.values() if name in r.split()] or [""]
        assert row, f"run {name} is not on the page (screenshot: {screenshot})"
        numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", row)]
        assert any(math.isclose(n, wer, abs_tol=1e-3) for n in numbers), \
            f"the wer of {name} ({wer}) is not in its row {row!r} (screenshot: {screenshot})"
        assert name.split("-")[0] in row.split(), f"trt.precision of {name} not shown"



def _shot(browser: Chrome, request: pytest.FixtureRequest, tmp_path: Path, name: str,
          record_property: Callable[[str, object], None]) -> Path:
    screenshot = Path(os.environ.get("TRT_SWEEP_SCREENSHOT_DIR") or tmp_path) / name
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshot))
    record_property(name, str(screenshot))
    _report(request, f"MLflow UI screenshot: {screenshot}")
    return screenshot


def _body(browser: Chrome) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.TAG_NAME, "body").text)


def _close_panels(browser: Chrome) -> None:
    from selenium.webdriver.common.by import By

    for close in browser.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
        with contextlib.suppress(Exception):
            close.click()


def test_the_experiment_opens_on_the_runs_table_with_the_dataset(
        mlflow_ui: tuple[Path, str], browser: Chrome, tmp_path: Path,
        request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> None:
    """The experiment is tagged as model development: its page opens on the runs table
    (not the GenAI overview), where each job's row names the test set it measured."""
    from selenium.webdriver.support.ui import WebDriverWait

    store, mlflow_url = mlflow_ui
    client = MlflowClient(f"sqlite:///{store}/mlruns/mlflow.db")
    exp_id = experiment_id(client)
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    jobs = [r for r in client.search_runs([exp_id], f"tags.`{tag.KIND}` = 'job'")]
    inputs = jobs[0].inputs
    assert inputs is not None
    digest = inputs.dataset_inputs[0].dataset.digest
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}?{ML}")
    WebDriverWait(browser, 45).until(lambda d: "/runs" in d.current_url
                                     and "sweep " in _body(d))
    landed = browser.current_url
    # The jobs are nested under the sweep's parent run: a metric filter and an order by a
    # metric list them flat.
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}/runs?{ML}"
                "&searchFilter=metrics.wer%20%3E%3D%200&orderByKey=metrics.%60wer%60"
                "&orderByAsc=true")
    try:
        WebDriverWait(browser, 45).until(lambda d: all(r.info.run_name in _body(d)
                                                       for r in jobs)
                                         and "demo_tiny" in _body(d))
        _close_panels(browser)
        text = _body(browser)
    finally:
        shot = _shot(browser, request, tmp_path, "mlflow_ui_runs_dataset.png", record_property)
    assert "/overview" not in landed and "/runs" in landed, landed
    assert f"demo_tiny ({digest})" in text or f"demo_tiny (#{digest})" in text, \
        f"no Dataset column value (screenshot: {shot})"


def test_the_models_tab_lists_the_engines_and_the_registry_names_its_source(
        mlflow_ui: tuple[Path, str], browser: Chrome, tmp_path: Path,
        request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> None:
    """Each job's engine is a LoggedModel (named after its flag set, the flag set as its
    params): the experiment's Models tab lists them; the promoted version names one of
    them as its source model."""
    from selenium.webdriver.support.ui import WebDriverWait

    store, mlflow_url = mlflow_ui
    uri = f"sqlite:///{store}/mlruns/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    exp_id = experiment_id(client)
    models = client.search_logged_models([exp_id])
    names = {m.name for m in models}
    assert {n.rsplit("-", 1)[0] for n in names} == {"fp32-o3", "bf16-o3"}
    assert all(m.params.get("trt.precision") in ("fp32", "bf16") for m in models)
    assert all(m.source_run_id for m in models)
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}/models?{ML}")
    try:
        WebDriverWait(browser, 45).until(lambda d: all(n in _body(d) for n in names)
                                         and REGISTERED in _body(d))
        _close_panels(browser)
        text = _body(browser)
    finally:
        shot = _shot(browser, request, tmp_path, "mlflow_ui_models.png", record_property)
    assert all(n in text for n in names), f"engines missing (screenshot: {shot})"

    version = client.get_model_version_by_alias(REGISTERED, "champion")
    assert version.source is not None and version.source.startswith("models:/m-")
    source = client.get_logged_model(str(version.source).removeprefix("models:/"))
    browser.get(f"{mlflow_url}/#/models/{REGISTERED}/versions/{version.version}?{ML}")
    try:
        WebDriverWait(browser, 45).until(lambda d: "Source Model" in _body(d)
                                         and source.name in _body(d))
    finally:
        shot = _shot(browser, request, tmp_path, "mlflow_ui_registered_source.png",
                     record_property)


def test_a_jobs_page_opens_on_its_description_and_the_parent_on_the_verdict(
        mlflow_ui: tuple[Path, str], browser: Chrome, tmp_path: Path,
        request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> None:
    """The run page of a job shows its description (WER in percent with its interval, p99
    with its spread, the verdict's words); the sweep's parent run shows the verdict."""
    from selenium.webdriver.support.ui import WebDriverWait

    from sweep.tracking import tags as tag

    store, mlflow_url = mlflow_ui
    client = MlflowClient(f"sqlite:///{store}/mlruns/mlflow.db")
    exp_id = experiment_id(client)
    (job,) = client.search_runs([exp_id], f"tags.`{tag.KIND}` = 'job' and "
                                          "attributes.run_name = 'bf16-o3'")
    (parent,) = client.search_runs([exp_id], f"tags.`{tag.KIND}` = 'sweep'")
    wer = f"WER {job.data.metrics['wer'] * 100:.2f} %"
    p99 = f"p99 {job.data.metrics['latency_p99_ms']:.1f} ms"
    assert wer in job.data.tags[tag.NOTE] and p99 in job.data.tags[tag.NOTE]
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}/runs/{job.info.run_id}?{ML}")
    try:
        WebDriverWait(browser, 45).until(lambda d: wer in _body(d) and p99 in _body(d))
        _close_panels(browser)
        text = _body(browser)
    finally:
        shot = _shot(browser, request, tmp_path, "mlflow_ui_job_description.png",
                     record_property)
    assert "ΔWER against fp32" in text and "CPU emulation" in text and "verdict: " in text, \
        f"the job's description is not on its page (screenshot: {shot})"
    browser.get(f"{mlflow_url}/#/experiments/{exp_id}/runs/{parent.info.run_id}?{ML}")
    try:
        WebDriverWait(browser, 45).until(lambda d: "Verdict" in _body(d))
        text = _body(browser)
    finally:
        shot = _shot(browser, request, tmp_path, "mlflow_ui_sweep_verdict.png",
                     record_property)
    sentence = parent.data.tags[tag.NOTE].split("**Verdict**: ")[1].split("\n")[0]
    assert sentence.split(":")[0] in text, f"the verdict is not on the page (screenshot: {shot})"
