"""What the real-browser tests share: Debian's Chromium through Playwright, the app (or another script)
started with ``streamlit run`` on a free localhost port, and the waits and screenshots of a walk.

The fixtures (``sync_playwright``, ``head_dir``, ``server``, ``page``, ``shots``) reach every test module
through ``tests/conftest.py``; each module gets its own server and browser tab. They skip with the
reason when /usr/bin/chromium or Playwright is missing. Never run ``playwright install`` here.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip the tests with the reason
    expect = PlaywrightTimeout = None

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "streamlit_app.py"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
VIEWING_COPY = Path("/tmp/mmsa_screens")
SHIPPED_HEAD = ROOT / "assets" / "models" / "default"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
SERVER_START_S = 60     # until /_stcore/health answers
FIRST_LOAD_MS = 120_000  # the first page view loads the encoders and the head (slow on a busy box)
STEP_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sync_playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.skip(f"Playwright for Python is not installed: {error}")
    return sync_playwright


@pytest.fixture(scope="module")
def head_dir(request):
    """The shipped default head when present, otherwise the head conftest trains on drawn pairs."""
    if (SHIPPED_HEAD / "card.json").exists():
        return SHIPPED_HEAD
    return request.getfixturevalue("trained_head")


@contextlib.contextmanager
def streamlit_server(script: Path, *, env: dict, cwd: Path, log_path: Path, address: str = "127.0.0.1"):
    """``streamlit run script`` on a free port, answering its health check; yields (port, process) and
    stops it afterwards. Fails the test with the server's log when it exits or never answers."""
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
             "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_S
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not answer within {SERVER_START_S} s:\n{log_path.read_text()}")
                time.sleep(0.5)
            yield port, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(sync_playwright, head_dir, tmp_path_factory):
    """The app on a free localhost port: its own MMSA_HOME, ``head_dir`` as the served head, no MVSA."""
    home = tmp_path_factory.mktemp("e2e_home")
    env = dict(os.environ, MMSA_HOME=str(home), MMSA_HEAD_DIR=str(head_dir),
               MMSA_MVSA_DIR=str(home / "no-mvsa-here"), MMSA_DATA_ROOT=str(tmp_path_factory.mktemp("e2e_data")),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log_path = home / "streamlit.log"
    with streamlit_server(APP, env=env, cwd=ROOT, log_path=log_path) as (port, _):
        yield {"url": f"http://127.0.0.1:{port}", "log": log_path}


@pytest.fixture(scope="module")
def page(sync_playwright, server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(STEP_MS)
        expect.set_options(timeout=STEP_MS)
        try:
            yield tab
        finally:
            context.close()
            browser.close()


@pytest.fixture(scope="module")
def shots():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    VIEWING_COPY.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS} (copied to {VIEWING_COPY})")
    return ARTIFACTS


def settle(page, timeout_ms: int = STEP_MS) -> None:
    """Wait until the script run finished and no spinner is left."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stSpinner"]', state="detached", timeout=timeout_ms)


def assert_clean(page, server) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text() + "\n" + server["log"].read_text()[-3000:]
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in body, body


# Every plotly chart on the page has drawn its figure (plotly sets _fullLayout when it has laid one
# out) and its drawing spans its container again after the viewport changed size.
CHARTS_LAID_OUT_JS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.every(plot => {
        const svg = plot.querySelector('.main-svg');
        if (!plot._fullLayout || !svg) return false;
        return Math.abs(svg.getBoundingClientRect().width - plot.getBoundingClientRect().width) <= 2;
    });
}"""


def charts_laid_out(page, timeout_ms: int = STEP_MS) -> None:
    settle(page, timeout_ms)
    page.wait_for_function(CHARTS_LAID_OUT_JS, timeout=timeout_ms)


def screenshot(page, folder: Path, name: str) -> Path:
    """A full-page shot: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 40, 900), 6000)})
    charts_laid_out(page)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, VIEWING_COPY / path.name)
    page.set_viewport_size({"width": width, "height": 900})
    return path


def go(page, label: str, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    page.get_by_role("heading", name=title).wait_for()
    settle(page)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` and wait for the rerun it starts."""
    box = page.get_by_role("combobox", name=label, exact=True)
    choice = page.get_by_role("option", name=option, exact=True)
    for attempt in range(3):  # a rerun landing while the list is open closes it: open it again
        box.click()
        box.fill(option)  # the list only draws the options in view: typing brings this one up
        try:
            choice.click(timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            box.press("Escape")
    expect(box).to_have_value(option)
    settle(page)
