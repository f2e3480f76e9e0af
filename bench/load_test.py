"""Load test: simultaneous browser users against one `streamlit run` of the app.

    python bench/load_test.py [--explore-users 8] [--pairs 500] [--explore-pairs 5] [--sweep 1,2,4,8]
                              [--correct-epochs 20] [--json out.json]

Starts its own Streamlit servers (each with a fresh MMSA_HOME, so no feature is cached from an earlier
phase; the shipped head ``assets/models/default``; the correction page's reference set is the project's
example pairs) and drives them with headless Chromium (``/usr/bin/chromium``, Playwright contexts on
this machine: the browser shares the CPU with the server):

- **explore** users: each analyses ``--explore-pairs`` distinct (text, image) pairs in a row on
  *Explore a pair* (type the text, upload the picture, press Analyse);
- one **batch** user: uploads a CSV of ``--pairs`` pairs, points at the images on the server, scores
  them and downloads the scored CSV;
- one **correction** run: uploads 8 labelled pairs on *Correct the model*, trains (at most
  ``--correct-epochs``) and saves a version (not activated, so every other user keeps the same model).

Pairs: MVSA-Single ``dev.csv`` then ``train.csv`` rows (``../shared/data/mvsa_single``, never
``test.csv``) when present, else pictures drawn here. An action's latency runs from the click to its
result in the page (the script run finished, the new result drawn, no stale result left).

Phases: **solo** (each user's actions alone, one after another, on a fresh server: the reference
results and latencies), **concurrent** (every user at once on a fresh server; every user's displayed
probabilities and the batch user's downloaded CSV must equal the solo ones) and, with ``--sweep``,
explore users alone at each count on a fresh server, to find how many keep the explore p95 under 2 s.
Prints per action n, p50, p95 and errors, the servers' peak memory (RSS of the server process and
its children), whether the results equal, and the machine block (``core.machine.machine_block``).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.machine import machine_block  # noqa: E402 - after the path is set

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHIPPED_HEAD = ROOT / "assets" / "models" / "default"
MVSA = Path(os.environ.get("MMSA_MVSA_DIR", ROOT.parent / "shared" / "data" / "mvsa_single"))
EXPLORE_TARGET_S = 2.0
SHOWN_PRECISION = 5e-4  # half of the 0.1 % the page shows
CORRECTION_PAIRS = 8
ACTION_TIMEOUT_MS = 300_000  # --timeout
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


@dataclass(frozen=True)
class Pair:
    id: str
    text: str
    image: Path
    label: str


@dataclass
class Workload:
    batch: list[Pair]
    explore: list[list[Pair]]
    correction: list[Pair]
    warmup: Pair
    data_root: Path       # the server may read images under this folder (MMSA_DATA_ROOT)
    image_folder: str     # the batch pictures' folder, relative to data_root
    source: str


# ----------------------------------------------------------------------------------------- the pairs

def _mvsa_rows(name: str) -> list[dict]:
    with open(MVSA / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def mvsa_workload(n_batch: int, users: int, per_user: int) -> Workload:
    """Batch: dev.csv rows, then train.csv rows when n_batch exceeds dev; explore, correction and the
    warm-up pair: further train.csv rows, so no phase finds another's features cached."""
    dev, train = _mvsa_rows("dev.csv"), _mvsa_rows("train.csv")
    pool = dev + train

    def pair(r):
        return Pair(r["id"], r["text"], MVSA / "images" / r["image"], r["label"])

    batch = [pair(r) for r in pool[:n_batch]]
    rest = [pair(r) for r in pool[n_batch:]]
    explore = [rest[u * per_user:(u + 1) * per_user] for u in range(users)]
    used = users * per_user
    return Workload(batch, explore, rest[used:used + CORRECTION_PAIRS], rest[used + CORRECTION_PAIRS],
                    MVSA.parent, f"{MVSA.name}/images", f"MVSA-Single dev.csv (+ train.csv) rows, {MVSA}")


def _draw(path: Path, mood: str, seed: int) -> Path:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    base = {"positive": (250, 200, 60), "negative": (30, 40, 70), "neutral": (128, 128, 128)}[mood]
    picture = Image.new("RGB", (480, 360), tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in base))
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y = rng.randint(0, 440), rng.randint(0, 320)
        draw.ellipse([x, y, x + rng.randint(10, 60), y + rng.randint(10, 60)],
                     fill=tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base))
    picture.save(path, quality=90)
    return path


def drawn_workload(folder: Path, n_batch: int, users: int, per_user: int) -> Workload:
    words = {"positive": ["lovely", "great", "happy", "amazing"], "negative": ["awful", "sad", "broken", "worst"],
             "neutral": ["schedule", "meeting", "form", "list"]}
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    total = n_batch + users * per_user + CORRECTION_PAIRS + 1
    pairs = []
    for k in range(total):
        label = ("positive", "negative", "neutral")[k % 3]
        text = f"{words[label][k % 4]} day number {k}, {words[label][(k // 4) % 4]} again"
        pairs.append(Pair(f"p{k}", text, _draw(images / f"p{k}.jpg", label, k), label))
    batch, rest = pairs[:n_batch], pairs[n_batch:]
    explore = [rest[u * per_user:(u + 1) * per_user] for u in range(users)]
    used = users * per_user
    return Workload(batch, explore, rest[used:used + CORRECTION_PAIRS], rest[used + CORRECTION_PAIRS],
                    folder, "images", "pairs drawn by the script (MVSA-Single absent)")


def pairs_csv(pairs: list[Pair], path: Path) -> Path:
    pd.DataFrame([{"id": p.id, "text": p.text, "image": p.image.name, "label": p.label} for p in pairs]) \
        .to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------------------- the server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in (Path("/proc") / str(current) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return total


class Server:
    """`streamlit run streamlit_app.py` on a free port with its own MMSA_HOME; samples the process
    tree's resident memory every 0.25 s while it runs."""

    def __init__(self, workload: Workload, label: str):
        self.home = Path(tempfile.mkdtemp(prefix=f"mmsa-load-{label}-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak_rss = 0
        self._stop = threading.Event()
        env = dict(os.environ, MMSA_HOME=str(self.home), MMSA_HEAD_DIR=str(SHIPPED_HEAD),
                   MMSA_MVSA_DIR=str(self.home / "no-mvsa-here"), MMSA_DATA_ROOT=str(workload.data_root),
                   HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.log_path = self.home / "streamlit.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _tree_rss(self.proc.pid))

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"streamlit did not answer within {timeout_s} s")

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------------------ the users

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


async def _open(context, url: str, heading: str):
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
    page = await _open(context, f"{url}/explore", "Explore a pair")
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
    except Exception as error:  # noqa: BLE001 - any failure of a user counts as an error and is listed
        await _failed(page, record, action, user, error)
    record.seen[user] = seen
    await page.close()


async def batch_user(context, url: str, workload: Workload, csv_path: Path, record: Record) -> None:
    """Upload the CSV, point at the server folder, score; then download the scored CSV."""
    from playwright.async_api import expect

    n = len(workload.batch)
    page = await _open(context, f"{url}/batch", "Batch scoring")
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
    except Exception as error:  # noqa: BLE001
        await _failed(page, record, action, "batch", error)
    await page.close()


async def correction_user(context, url: str, csv_path: Path, images: list[Path], epochs: int,
                          record: Record) -> None:
    """Upload labelled pairs, train once (at most ``epochs``), save a version without activating it."""
    from playwright.async_api import expect

    page = await _open(context, f"{url}/correct", "Correct the model")
    action = "correct: add labelled pairs"
    try:
        await page.get_by_role("heading", name="3. Versions").wait_for()
        await page.get_by_role("tab", name="Upload labelled pairs").click()
        await page.get_by_label("Labelled CSV", exact=False).locator("input[type=file]").set_input_files(str(csv_path))
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
    except Exception as error:  # noqa: BLE001
        await _failed(page, record, action, "correction", error)
    await page.close()


# ----------------------------------------------------------------------------------------- the phases

async def _warm_up(browser, server: Server, workload: Workload) -> None:
    """Load the model, run one pair through both encoders and encode the reference set: one-off costs
    a user of a long-running server does not pay."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    record = Record()
    await explore_user(context, server.url, [workload.warmup], record, "warm-up")
    page = await _open(context, f"{server.url}/correct", "Correct the model")
    await page.get_by_role("heading", name="3. Versions").wait_for()
    await context.close()
    if any(record.errors.values()):
        raise RuntimeError(f"warm-up failed: {record.errors}")


async def run_phase(name: str, workload: Workload, files: dict, explore_users: int, with_batch: bool,
                    with_correction: bool, concurrent: bool, epochs: int) -> dict:
    from playwright.async_api import async_playwright

    server = Server(workload, name)
    print(f"{name}: server starting ({server.home})", flush=True)
    try:
        server.wait_ready()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            await _warm_up(browser, server, workload)
            record = Record()
            users = []
            for u in range(explore_users):
                users.append(lambda ctx, u=u: explore_user(ctx, server.url, workload.explore[u], record, f"explore-{u}"))
            if with_batch:
                users.append(lambda ctx: batch_user(ctx, server.url, workload, files["batch_csv"], record))
            if with_correction:
                users.append(lambda ctx: correction_user(ctx, server.url, files["correction_csv"],
                                                         [q.image for q in workload.correction], epochs, record))

            async def one(user):
                context = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
                try:
                    await user(context)
                finally:
                    await context.close()

            print(f"{name}: {len(users)} users {'at once' if concurrent else 'one after another'}…", flush=True)
            started = time.perf_counter()
            if concurrent:
                await asyncio.gather(*(one(user) for user in users))
            else:
                for user in users:
                    await one(user)
            wall = time.perf_counter() - started
            await browser.close()
    finally:
        server.stop()
    return {"phase": name, "wall_s": wall, "peak_rss_mb": server.peak_rss / 2**20, "record": record,
            "explore_users": explore_users, "batch": with_batch, "correction": with_correction}


# ---------------------------------------------------------------------------------------- the figures

def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summary(phase: dict) -> list[dict]:
    record = phase["record"]
    return [{"action": action, "n": len(record.times[action]), "p50_s": _pct(record.times[action], 50),
             "p95_s": _pct(record.times[action], 95), "errors": len(record.errors.get(action, []))}
            for action in record.times]


def compare(solo: Record, other: Record, users: list[str]) -> dict:
    """Whether every user saw what they saw alone: explore charts and the correction's figures equal,
    the batch CSV byte for byte (else the largest probability difference)."""
    differ = [u for u in users if u.startswith("explore") and other.seen.get(u) != solo.seen.get(u)]
    gaps = [abs(a - b) for u in users if u.startswith("explore")
            for x, y in zip(solo.seen.get(u, []), other.seen.get(u, []))
            for tx, ty in zip(x["chart"], y["chart"]) for a, b in zip(tx["y"], ty["y"])]
    out = {"explore_equal": not differ, "explore_users_differing": differ,
           "explore_max_prob_diff": max(gaps, default=None),
           # The page shows probabilities to 0.1 %: float32 noise from encoding in other batch
           # sizes or thread interleavings stays far below that.
           "explore_equal_as_shown": all(other.seen.get(u) is not None and len(other.seen[u]) == len(solo.seen.get(u, []))
                                         for u in users if u.startswith("explore")) and max(gaps, default=0) < SHOWN_PRECISION,
           "explore_users_compared": sum(u.startswith("explore") for u in users)}
    if "batch" in solo.seen or "batch" in other.seen:
        a, b = solo.seen.get("batch"), other.seen.get("batch")
        out["batch_csv_identical"] = a is not None and a == b
        if a is not None and b is not None and a != b:
            fa, fb = pd.read_csv(io.BytesIO(a)), pd.read_csv(io.BytesIO(b))
            probs = [c for c in fa.columns if c.startswith("p_")]
            out["batch_same_predictions"] = list(fa["prediction"]) == list(fb["prediction"])
            out["batch_max_prob_diff"] = float(np.nanmax(np.abs(fa[probs].to_numpy() - fb[probs].to_numpy())))
    if "correction" in solo.seen or "correction" in other.seen:
        out["correction_equal"] = solo.seen.get("correction") == other.seen.get("correction")
        out["correction_figures"] = {"alone": solo.seen.get("correction"), "at_once": other.seen.get("correction")}
    return out


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def print_table(title: str, rows: list[dict], solo_rows: list[dict] | None = None) -> None:
    alone = {r["action"]: r for r in solo_rows or []}
    print(f"\n{title}")
    print(f"{'action':32} {'n':>4} {'p50 s':>8} {'p95 s':>8} {'errors':>7}" + ("   alone p50 s" if alone else ""))
    for r in rows:
        line = f"{r['action']:32} {r['n']:>4} {_fmt(r['p50_s']):>8} {_fmt(r['p95_s']):>8} {r['errors']:>7}"
        if alone:
            line += f"   {_fmt(alone.get(r['action'], {}).get('p50_s')):>11}"
        print(line)


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--explore-users", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=500, help="pairs the batch user scores")
    parser.add_argument("--explore-pairs", type=int, default=5, help="distinct pairs each explore user analyses")
    parser.add_argument("--correct-epochs", type=int, default=20, help="max epochs of the correction run")
    parser.add_argument("--sweep", default="", help="explore-user counts to try alone, e.g. 1,2,4,8")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one action may take before it is an error")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    global ACTION_TIMEOUT_MS
    ACTION_TIMEOUT_MS = int(args.timeout * 1000)
    from playwright.async_api import expect
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    sweep = sorted({int(n) for n in args.sweep.split(",") if n.strip()})
    users = max([args.explore_users, *sweep])
    scratch = Path(tempfile.mkdtemp(prefix="mmsa-load-pairs-"))
    if (MVSA / "dev.csv").is_file() and (MVSA / "train.csv").is_file():
        workload = mvsa_workload(args.pairs, users, args.explore_pairs)
    else:
        workload = drawn_workload(scratch, args.pairs, users, args.explore_pairs)
    files = {"batch_csv": pairs_csv(workload.batch, scratch / "batch.csv"),
             "correction_csv": pairs_csv(workload.correction, scratch / "correction.csv")}
    machine = machine_block()
    load_before = _load_average()
    print(f"pairs: {workload.source}; load average before: {load_before}", flush=True)

    phase = {"workload": workload, "files": files, "epochs": args.correct_epochs}
    solo = asyncio.run(run_phase("solo", explore_users=args.explore_users, with_batch=True, with_correction=True,
                                 concurrent=False, **phase))
    print_table(f"alone, one user after another ({solo['wall_s']:.0f} s)", summary(solo))
    mixed = asyncio.run(run_phase("concurrent", explore_users=args.explore_users, with_batch=True,
                                  with_correction=True, concurrent=True, **phase))
    names = [f"explore-{u}" for u in range(args.explore_users)] + ["batch", "correction"]
    equality = compare(solo["record"], mixed["record"], names)
    print_table(f"at once: {args.explore_users} explore users + 1 batch user ({args.pairs} pairs) + 1 correction run "
                f"({mixed['wall_s']:.0f} s)", summary(mixed), summary(solo))
    print(f"server peak memory (RSS, process tree): alone {solo['peak_rss_mb']:,.0f} MB, "
          f"at once {mixed['peak_rss_mb']:,.0f} MB")
    print(f"results equal to the solo ones: {json.dumps(equality)}")
    errors = {a: e for a, e in {**solo['record'].errors, **mixed['record'].errors}.items() if e}
    for action, messages in errors.items():
        for message in messages:
            print(f"ERROR {action}: {message}")

    sweep_rows = []
    for n in sweep:
        result = asyncio.run(run_phase(f"sweep-{n}", explore_users=n, with_batch=False, with_correction=False,
                                       concurrent=True, **phase))
        row = next((r for r in summary(result) if r["action"].startswith("explore")), None)
        same = compare(solo["record"], result["record"], [f"explore-{u}" for u in range(min(n, args.explore_users))])
        sweep_rows.append({"explore_users": n, **(row or {}), "peak_rss_mb": result["peak_rss_mb"],
                           "explore_equal": same["explore_equal"], "explore_equal_as_shown": same["explore_equal_as_shown"]})
        print(f"sweep: {n} explore users at once: p50 {_fmt(row and row['p50_s'])} s, p95 {_fmt(row and row['p95_s'])} s, "
              f"errors {row and row['errors']}, peak RSS {result['peak_rss_mb']:,.0f} MB", flush=True)
    served = max((r["explore_users"] for r in sweep_rows if r.get("p95_s") is not None
                  and r["p95_s"] < EXPLORE_TARGET_S and r["errors"] == 0), default=None)
    if sweep_rows:
        print(f"explore users served at once with p95 < {EXPLORE_TARGET_S:.0f} s: {served}")
    load_after = _load_average()
    print(f"load average after: {load_after} (the machine is shared: other work runs beside these figures)")
    print(f"measured on: {machine.get('cpu_model')} ({machine['cores']['usable']} usable CPUs; "
          f"avx2 {machine['flags']['avx2']}, avx512f {machine['flags']['avx512f']}, "
          f"avx512_vnni {machine['flags']['avx512_vnni']}), {machine['measured_at']}")

    if args.json:
        args.json.write_text(json.dumps({
            "solo": {"wall_s": solo["wall_s"], "peak_rss_mb": solo["peak_rss_mb"], "actions": summary(solo)},
            "concurrent": {"wall_s": mixed["wall_s"], "peak_rss_mb": mixed["peak_rss_mb"], "actions": summary(mixed),
                           "explore_users": args.explore_users, "batch_pairs": args.pairs},
            "equal_to_solo": equality, "sweep": sweep_rows, "explore_users_served_p95_under_2s": served,
            "errors": errors, "pairs": workload.source, "load_average": {"before": load_before, "after": load_after},
            "machine": machine}, indent=2))
    total_errors = sum(len(e) for e in errors.values())
    return 0 if total_errors == 0 and equality["explore_equal_as_shown"] and equality.get("batch_csv_identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
