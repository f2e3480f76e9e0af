"""End-to-end in a real browser: headless Chromium (Playwright) against `streamlit run`.

The test starts its own Streamlit server on a free localhost port (own MMSA_HOME, the fixture head
from conftest as MMSA_HEAD_DIR, no MVSA so the correction page uses the bundled example pairs), walks
every page, analyses one typed text + uploaded Pillow-drawn PNG on *Explore a pair*, checks the
three-way probability chart, and takes a full-page screenshot of each page into tests/artifacts/
(git-ignored) and /tmp/mmsa_screens/ for a person to look at.

Skips with the reason when /usr/bin/chromium or Playwright is missing. See docs/architecture.md, "Testing in a
real browser". Never run `playwright install` here.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import draw_image

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
HEADS = ("Text only", "Image only", "Fused")


def _free_port() -> int:
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


@pytest.fixture(scope="module")
def server(sync_playwright, head_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e_home")
    port = _free_port()
    env = dict(os.environ, MMSA_HOME=str(home), MMSA_HEAD_DIR=str(head_dir),
               MMSA_MVSA_DIR=str(home / "no-mvsa-here"), MMSA_DATA_ROOT=str(tmp_path_factory.mktemp("e2e_data")),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log_path = home / "streamlit.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {url} within {SERVER_START_S} s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield {"url": url, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def page(sync_playwright, server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(STEP_MS)
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


def _settle(page, timeout_ms: int = STEP_MS) -> None:
    """Wait until the script run finished and no spinner is left."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stSpinner"]', state="detached", timeout=timeout_ms)


def _assert_clean(page, server) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text() + "\n" + server["log"].read_text()[-3000:]
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in body, body


# Every plotly chart on the page has drawn its figure (plotly sets _fullLayout when it has laid one
# out) and its drawing spans its container again after the viewport changed size.
_CHARTS_LAID_OUT = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    return plots.every(plot => {
        const svg = plot.querySelector('.main-svg');
        if (!plot._fullLayout || !svg) return false;
        return Math.abs(svg.getBoundingClientRect().width - plot.getBoundingClientRect().width) <= 2;
    });
}"""


def _charts_laid_out(page, timeout_ms: int = STEP_MS) -> None:
    _settle(page, timeout_ms)
    page.wait_for_function(_CHARTS_LAID_OUT, timeout=timeout_ms)


def _screenshot(page, folder: Path, name: str) -> Path:
    """A full-page shot: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]')]"
        ".map(e => e.scrollHeight), document.body.scrollHeight)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 40, 900), 6000)})
    _charts_laid_out(page)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, VIEWING_COPY / path.name)
    page.set_viewport_size({"width": width, "height": 900})
    return path


def _go(page, label: str, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    page.get_by_role("heading", name=title).wait_for()
    _settle(page)


def test_every_page_in_a_real_browser(page, server, shots, tmp_path):
    started = time.monotonic()

    # ----- A bookmarked deep link is the server's very first request: still the real app -----
    page.goto(server["url"] + "/batch")
    page.get_by_role("heading", name="Batch scoring").wait_for(timeout=FIRST_LOAD_MS)
    _settle(page, FIRST_LOAD_MS)
    sidebar = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Explore a pair" in sidebar and "common" not in sidebar, sidebar

    # ----- Home: loads the encoders and the head -----
    page.goto(server["url"])
    page.get_by_role("heading", name="Multimodal sentiment dashboard").wait_for(timeout=FIRST_LOAD_MS)
    page.get_by_text("The model serving now").wait_for(timeout=FIRST_LOAD_MS)
    _settle(page, FIRST_LOAD_MS)
    _assert_clean(page, server)
    nav = page.locator('[data-testid="stSidebarNav"]')
    for label in ("Home", "Explore a pair", "Batch scoring", "Correct the model"):
        assert nav.get_by_text(label, exact=True).count() == 1, label
    _screenshot(page, shots, "1-home")

    # ----- Explore: type a text, upload a drawn PNG, analyse -----
    _go(page, "Explore a pair", "Explore a pair")
    _assert_clean(page, server)
    text = page.get_by_label("Text", exact=True)
    text.fill("What a gorgeous sunny day at the beach, I love it!")
    text.press("Control+Enter")
    _settle(page)
    image = draw_image(tmp_path / "sunny_beach.png", "positive", seed=7, size=(160, 120))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_text("sunny_beach.png").first.wait_for()
    page.locator('[data-testid="stImage"]').first.wait_for()
    _settle(page)
    page.get_by_role("button", name="Analyse").click()
    page.get_by_role("heading", name="Result").wait_for()
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    _settle(page)
    legend = [t.strip() for t in chart.locator(".legendtext").all_text_contents()]
    assert legend == list(HEADS), legend
    traces = chart.locator(".barlayer .trace")
    assert traces.count() == 3
    for i in range(3):
        assert traces.nth(i).locator(".point").count() == 3  # negative, neutral, positive
    assert "Sentiment probabilities by modality" in chart.inner_text()
    metrics = page.locator('[data-testid="stMetric"]')
    assert metrics.first.inner_text().startswith("Prediction")
    _assert_clean(page, server)
    _screenshot(page, shots, "2-explore")

    # ----- Batch scoring: opens on its CSV step -----
    _go(page, "Batch scoring", "Batch scoring")
    page.get_by_text("Upload a CSV to begin").wait_for()
    _assert_clean(page, server)
    _screenshot(page, shots, "3-batch")

    # ----- Correct the model: encodes the example reference pairs on first open -----
    _go(page, "Correct the model", "Correct the model")
    page.get_by_role("heading", name="3. Versions").wait_for(timeout=FIRST_LOAD_MS)
    _settle(page, FIRST_LOAD_MS)
    _assert_clean(page, server)
    _screenshot(page, shots, "4-correct")

    print(f"browser walk took {time.monotonic() - started:.1f} s")
