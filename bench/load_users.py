"""The load test's browser users (Playwright, async): an explore user analysing pairs, the batch user
scoring a CSV and downloading it, the correction run; each action timed from the click to its result in
the page, and what each user saw kept in a ``Record`` for the comparison with the solo phase."""
from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.load_workload import Pair, Workload

ACTION_TIMEOUT_MS = 300_000  # --timeout (load_test.main sets it)
ERROR_SHOTS = Path(tempfile.gettempdir()) / "mmsa-load-errors"
NOT_RUNNING = '[data-testid="stApp"][data-test-script-state="notRunning"]'

# The explore result is on screen for the inputs on screen: the run finished, a "Result" heading, no
# stale-result warning, and the three-way chart drawn.
EXPLORE_DONE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main || main.innerText.includes('This result is for the previous')) return false;
    if (![...main.querySelectorAll('h3')].some(h => h.innerText.trim() === 'Result')) return false;
    const plot = main.querySelector('.js-plotly-plot');
    return !!(plot && plot.data && plot.data.length === 3);
}"""
CHART_DATA = """() => document.querySelector('[data-testid="stMain"] .js-plotly-plot').data
    .map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)}))"""


@dataclass
class Record:
    """Every timed action of a phase and what each user saw."""
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    seen: dict[str, object] = field(default_factory=dict)

    def time(self, action: str, seconds: float) -> None:
        self.times.setdefault(action, []).append(seconds)
        self.errors.setdefault(action, [])

    def error(self, action: str, message: str) -> None:
        self.errors.setdefault(action, []).append(message)
        self.times.setdefault(action, [])
        print(f"  error in {action}: {message}", flush=True)


async def _failed(page, record: Record, action: str, user: str, error: Exception) -> None:
    """Count the failure and keep a screenshot of what the user saw."""
    ERROR_SHOTS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):  # the page may be gone
        await page.screenshot(path=str(ERROR_SHOTS / f"{user}.png"), full_page=True)
    record.error(action, f"{user}: {type(error).__name__}: {str(error)[:300]} (screenshot in {ERROR_SHOTS})")


async def _settled(page) -> None:
    await page.wait_for_selector(NOT_RUNNING, timeout=ACTION_TIMEOUT_MS)
    await page.wait_for_selector('[data-testid="stSpinner"]', state="detached", timeout=ACTION_TIMEOUT_MS)


async def open_page(context, url: str, heading: str):
    page = await context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    await page.goto(url)
    await page.get_by_role("heading", name=heading).wait_for()
    await _settled(page)
    return page


async def _upload(page, image: Path, tries: int = 3) -> None:
    """Drop the picture on the explorer's uploader and wait until the page says it is in use; when it
    does not within a minute, drop it again, as a user would."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    in_use = page.get_by_text(f"Image in use: {image.name}")
    for attempt in range(tries):
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
        try:
            await in_use.wait_for(timeout=ACTION_TIMEOUT_MS if attempt == tries - 1 else 60_000)
            break
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
            print(f"  upload of {image.name} not taken, dropping it again", flush=True)
    await _settled(page)


async def explore_user(context, url: str, pairs: list[Pair], record: Record, user: str) -> None:
    """Type a text, upload its picture, Analyse; the latency is click → result drawn."""
    action = "explore: analyse a pair"
    page = await open_page(context, f"{url}/explore", "Explore a pair")
    seen = []
    try:
        for pair in pairs:
            # The picture first, on an idle page; then the text, which the click on Analyse sends
            # (the text box loses focus), as when a user types and clicks.
            await _upload(page, pair.image)
            await page.get_by_label("Text", exact=True).fill(pair.text)
            started = time.perf_counter()
            await page.get_by_role("button", name="Analyse").click()
            await page.wait_for_function(EXPLORE_DONE, timeout=ACTION_TIMEOUT_MS)
            record.time(action, time.perf_counter() - started)
            seen.append({"pair": pair.id, "chart": await page.evaluate(CHART_DATA)})
    except Exception as error:
        await _failed(page, record, action, user, error)
    record.seen[user] = seen
    await page.close()


async def batch_user(context, url: str, workload: Workload, csv_path: Path, record: Record) -> None:
    """Upload the CSV, point at the server folder, score; then download the scored CSV."""
    from playwright.async_api import expect

    n = len(workload.batch)
    page = await open_page(context, f"{url}/batch", "Batch scoring")
    action = "batch: score pairs"
    try:
        await page.get_by_label("CSV file with one pair per row").locator("input[type=file]").set_input_files(str(csv_path))
        await expect(page.get_by_text(f"{n:,} rows · columns")).to_be_visible()
        await _settled(page)
        await page.get_by_text("A folder on the server", exact=True).click()
        folder = page.get_by_role("textbox", name="Folder under")
        await folder.fill(workload.image_folder)
        await folder.press("Enter")
        await expect(page.get_by_text("image files found.")).to_be_visible()
        await _settled(page)
        started = time.perf_counter()
        await page.get_by_role("button", name="Score the table").click()
        await expect(page.get_by_text(f"Showing {n:,} of {n:,} rows.")).to_be_visible()
        await _settled(page)
        record.time(action, time.perf_counter() - started)
        action = "batch: download scored CSV"
        started = time.perf_counter()
        async with page.expect_download() as download:
            await page.get_by_role("button", name="Download the scored CSV").click()
        path = await (await download.value).path()
        record.time(action, time.perf_counter() - started)
        record.seen["batch"] = Path(path).read_bytes()
    except Exception as error:
        await _failed(page, record, action, "batch", error)
    await page.close()


async def correction_user(context, url: str, csv_path: Path, images: list[Path], epochs: int,
                          record: Record) -> None:
    """Upload labelled pairs, train once (at most ``epochs``), save a version without activating it."""
    from playwright.async_api import expect

    page = await open_page(context, f"{url}/correct", "Correct the model")
    action = "correct: add labelled pairs"
    try:
        await page.get_by_role("heading", name="3. Versions").wait_for()
        await page.get_by_role("tab", name="Upload labelled pairs").click()
        await page.locator(".st-key-correct_csv input[type=file]").set_input_files(str(csv_path))
        await page.get_by_label("Its images", exact=False).locator("input[type=file]").set_input_files(
            [str(p) for p in images])
        await expect(page.get_by_text(csv_path.name, exact=True)).to_be_visible()
        await expect(page.get_by_text(images[0].name, exact=True)).to_be_visible()
        await _settled(page)
        # A click before every picture has finished uploading adds fewer pairs: click again (adding
        # the same pair twice keeps one), as a user would.
        full = page.get_by_role("tab", name=f"Your correction set ({len(images)})")
        for attempt in range(3):
            started = time.perf_counter()
            await page.get_by_role("button", name="Add these pairs to the correction set").click()
            await expect(page.get_by_text("the correction set now holds").or_(
                page.get_by_text("These pairs cannot be used"))).to_be_visible()
            await _settled(page)
            if await full.count():
                break
            print(f"  correction: not every picture was uploaded yet (try {attempt + 1})", flush=True)
        await expect(full).to_be_visible(timeout=5_000)
        record.time(action, time.perf_counter() - started)

        action = "correct: train"
        await page.get_by_text("Settings", exact=True).click()
        box = page.get_by_role("spinbutton", name="Max epochs")
        await box.fill(str(epochs))
        await box.press("Enter")
        await expect(box).to_have_value(str(epochs))
        await _settled(page)
        started = time.perf_counter()
        await page.get_by_role("button", name="Train correction").click()
        await expect(page.get_by_text("Done in")).to_be_visible()
        await page.get_by_role("button", name="Save as a new version").wait_for()
        await _settled(page)
        record.time(action, time.perf_counter() - started)
        metrics = page.locator('[data-testid="stMetric"]')
        record.seen["correction"] = [" ".join((await metrics.nth(i).inner_text()).split())
                                     for i in range(await metrics.count() - 1)]  # the last one is the time taken

        action = "correct: save a version"
        started = time.perf_counter()
        await page.get_by_role("button", name="Save as a new version").click()
        await expect(page.get_by_text("Saved version")).to_be_visible()
        await _settled(page)
        record.time(action, time.perf_counter() - started)
    except Exception as error:
        await _failed(page, record, action, "correction", error)
    await page.close()
