"""Benchmark: how fast the analysis page's engine answers over a big saved run, and how much memory it takes.

    python bench/bench_analysis.py --rows N [--json] [--browser]

Builds a synthetic run of N posts (in a child process, so its memory is not counted): MVSA-Single train
and dev rows (text, picture, label; never test.csv) drawn with replacement, 50 brands of unequal size,
dates spread over 2024 as ISO strings, and scores made up from the labels (this measures the analysis,
not the model). Without MVSA the texts and picture names are generated. Then, in this process, it
times what the page does on a filter change, each operation three times (the median is reported):

- ``open_ms``: open the run (record + a DuckDB view over its Parquet, row count), the first time;
- ``filter_search_ms``: posts left after a class filter and a text search, with the per-term counts;
- ``breakdown_ms``: breakdown by the 50-value brand column under those filters;
- ``weekly_ms``: the weekly timeline under those filters (``weekly_first_ms``: the first call, which
  also works out how the date column reads);
- ``gallery_ms``: one gallery page of 24 posts under those filters;
- ``memory_growth_mb``: peak resident memory of this process after the operations minus before them.

The run is built in a temporary folder removed at the end (``MMSA_BENCH_HOME=DIR`` keeps it there).
``--browser`` also starts the app on the run and measures, in headless Chromium (/usr/bin/chromium),
how long a filter change takes until every view has redrawn (``browser_redraw_ms``, median of 3).
With ``--json`` the last line printed is one JSON object with those keys, ``rows``, ``build_s`` and the
``machine`` block (core.machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BRANDS = 50
SEARCH = "love"  # a common word in MVSA tweets
FILTERS = {"classes": ["negative", "positive"], "search": SEARCH}
REPEATS = 3


def build_run(rows: int, seed: int = 0) -> str:
    """Save the synthetic run in $MMSA_HOME and return its id."""
    import numpy as np
    import pandas as pd

    from core import config
    from core.runs import save_run
    from core.scoring.batch import result_columns

    rng = np.random.default_rng(seed)
    mvsa = config.mvsa_dir()
    if (mvsa / "train.csv").exists():
        pool = pd.concat([pd.read_csv(mvsa / name, dtype=str, keep_default_na=False) for name in ("train.csv", "dev.csv")])
        texts, images, labels = pool["text"].to_numpy(), pool["image"].to_numpy(), pool["label"].to_numpy()
        image_root = mvsa / "images"
    else:
        words = np.array("what a lovely day love rain storm happy sad city beach #sun #rain @friend".split())
        texts = np.array([" ".join(rng.choice(words, 12)) for _ in range(2000)])
        images = np.array([f"{k}.jpg" for k in range(2000)])
        labels = rng.choice(["negative", "neutral", "positive"], 2000)
        image_root = Path(tempfile.gettempdir()) / "no-pictures"
    pick = rng.integers(0, len(texts), rows)
    classes = np.array(["negative", "neutral", "positive"])
    label = labels[pick]
    prediction = np.where(rng.random(rows) < 0.7, label, classes[rng.integers(0, 3, rows)])
    confidence = rng.uniform(0.34, 1.0, rows)
    weights = 1 / np.arange(1, BRANDS + 1)
    brand = np.array([f"brand-{k:02d}" for k in range(BRANDS)])[rng.choice(BRANDS, rows, p=weights / weights.sum())]
    seconds = rng.integers(0, 366 * 86400, rows)
    dates = pd.to_datetime("2024-01-01") + pd.to_timedelta(seconds, unit="s")
    frame = pd.DataFrame({"row": np.arange(rows), "id": [f"p{k}" for k in range(rows)], "text": texts[pick],
                          "image": images[pick], "label": label})
    for head in ("text", "image", "fused"):
        for c in classes:
            frame[f"p_{head}_{c}"] = np.where(prediction == c, confidence, (1 - confidence) / 2)
    frame["text_prediction"] = frame["image_prediction"] = frame["prediction"] = prediction
    frame["confidence"] = confidence
    frame["prediction_source"] = "fused"
    frame["conflict"] = rng.random(rows) < 0.1
    frame["status"] = "ok"
    frame["message"] = ""
    frame = frame[result_columns()]
    frame["brand"] = brand
    frame["date"] = dates.strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = [str(image_root / name) for name in frame["image"]]
    return save_run(frame, source=f"synthetic-{rows}.csv", engine="cli", name=f"bench {rows:,} posts",
                    image_paths=paths).id


def _memory_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn, repeats: int = REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def measure(run_id: str) -> dict:
    """The engine's timings and memory over the saved run (see the module docstring)."""
    from core.analysis import Filters, RunQuery, breakdown, gallery, over_time
    from core.runs import open_run

    before = _memory_mb("VmRSS")
    started = time.perf_counter()
    run = open_run(run_id)
    query = RunQuery.for_run(run)
    total = query.total_rows
    open_ms = (time.perf_counter() - started) * 1000
    filters = Filters(**FILTERS)
    figures = {"rows": total, "open_ms": round(open_ms, 1)}
    started = time.perf_counter()
    over_time(query, filters, "date", "W")
    figures["weekly_first_ms"] = round((time.perf_counter() - started) * 1000, 1)
    ms, counts = _timed(lambda: (query.count(filters), query.search_counts(filters)))
    figures["filter_search_ms"] = round(ms, 1)
    figures["breakdown_ms"] = round(_timed(lambda: breakdown(query, filters, "brand", top=10))[0], 1)
    figures["weekly_ms"] = round(_timed(lambda: over_time(query, filters, "date", "W"))[0], 1)
    figures["gallery_ms"] = round(_timed(lambda: gallery(query, filters, page=3, per_page=24))[0], 1)
    figures["matching_posts"] = counts[0]
    figures["memory_growth_mb"] = round(_memory_mb("VmHWM") - before, 1)
    query.close()
    return figures


def browser_redraw(run_id: str, home: str, repeats: int = REPEATS) -> float:
    """Median ms from a filter change in Chromium until the page has rerun and every chart is drawn."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MMSA_HOME=home, PYTHONUNBUFFERED="1")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                               "--server.headless", "true", "--server.port", str(port), "--server.address",
                               "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/analyse?run={run_id}")
            idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
            page.get_by_role("heading", name="Gallery").wait_for()
            page.wait_for_selector(idle)
            box = page.get_by_role("textbox", name="Search the text")
            times = []
            for term in ["love", "happy", "#love", "rain"][:repeats + 1]:
                started = time.perf_counter()
                box.fill(term)
                box.press("Enter")
                page.get_by_text(f"Search matches (posts): {term}:").wait_for()  # this filter's answer is on screen
                page.wait_for_selector(idle)
                page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].length >= 2 && "
                                       "[...document.querySelectorAll('.js-plotly-plot')].every(p => p._fullLayout)")
                times.append((time.perf_counter() - started) * 1000)
            browser.close()
        return statistics.median(times[1:] or times)  # the first change also warms the server's caches
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--browser", action="store_true", help="also time a filter change in Chromium")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.build_only:
        print(build_run(args.rows))
        return
    keep = os.environ.get("MMSA_BENCH_HOME")
    home = keep or tempfile.mkdtemp(prefix="mmsa-bench-analysis-")
    try:
        _bench(args, home)
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _bench(args, home: str) -> None:
    from core.machine import describe_machine, machine_block

    env = dict(os.environ, MMSA_HOME=home)
    started = time.perf_counter()
    built = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--build-only"], env=env,
                           capture_output=True, text=True, check=False)
    if built.returncode:
        raise SystemExit(f"building the run failed:\n{built.stderr[-3000:]}")
    run_id = built.stdout.strip().splitlines()[-1]
    build_s = round(time.perf_counter() - started, 1)
    print(f"built run {run_id} ({args.rows:,} posts) in {build_s} s under {home}", file=sys.stderr)
    os.environ["MMSA_HOME"] = home
    figures = measure(run_id)
    figures["build_s"] = build_s
    if args.browser:
        figures["browser_redraw_ms"] = round(browser_redraw(run_id, home), 1)
    machine = machine_block()
    for key, value in figures.items():
        print(f"{key:>20}: {value}", file=sys.stderr)
    print(f"measured on: {describe_machine(machine)}", file=sys.stderr)
    if args.json:
        print(json.dumps({**figures, "machine": machine}), flush=True)


if __name__ == "__main__":
    main()
