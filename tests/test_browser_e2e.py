"""End-to-end in a real browser: headless Chromium (Playwright) against `streamlit run`.

The tests start their own Streamlit server on a free localhost port (own MMSA_HOME, the shipped head
or conftest's fixture head as MMSA_HEAD_DIR, no MVSA so the correction page uses the bundled example
pairs) and walk the app as a user does, waiting on what the page shows (never on sleeps):
- every page opens (a deep link first); *Explore a pair* analyses a typed text + an uploaded
  Pillow-drawn PNG, then a built-in example pair, each with its three-way probability chart;
- *Batch scoring* scores an uploaded CSV (with an extra `note` column) and its uploaded pictures, the
  filters change "Showing N of M rows", both downloads hold the rows shown with every input column,
  and the wrongly predicted pair goes to the correction set;
- *Correct the model* trains on it once, saves a version, activates it and rolls back;
- hostile rows (posts holding a remote picture, a link, bold, HTML; a file and a column named with
  markup) show as written: a little HTTP server the posts point at receives no request, and no
  picture, link or bold text comes out of them.
A full-page screenshot of each step lands in tests/artifacts/ (git-ignored) and /tmp/mmsa_screens/
for a person to look at.

Skips with the reason when /usr/bin/chromium or Playwright is missing. See docs/architecture.md, "Testing in a
real browser". Never run `playwright install` here.
"""
from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from tests.browser import (
    FIRST_LOAD_MS,
    assert_clean,
    charts_laid_out,
    choose,
    expect,
    go,
    screenshot,
    settle,
)
from tests.conftest import draw_image

HEADS = ("Text only", "Image only", "Fused")
LABELS = ("negative", "neutral", "positive")
CORRECTION_EPOCHS = 8


def _expect_three_way_chart(page) -> None:
    """The result chart: one bar set per head (text only, image only, fused), three classes each."""
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_contain_text("Sentiment probabilities by modality")
    settle(page)
    legend = [t.strip() for t in chart.locator(".legendtext").all_text_contents()]
    assert legend == list(HEADS), legend
    traces = chart.locator(".barlayer .trace")
    expect(traces).to_have_count(3)
    for i in range(3):
        expect(traces.nth(i).locator(".point")).to_have_count(3)  # negative, neutral, positive


def _expect_prediction(page) -> None:
    prediction = page.locator('[data-testid="stMetric"]').first
    expect(prediction).to_contain_text("Prediction")
    assert prediction.locator('[data-testid="stMetricValue"]').inner_text().strip() in LABELS


def test_every_page_in_a_real_browser(page, server, shots, tmp_path):
    started = time.monotonic()

    # ----- A bookmarked deep link is the server's very first request: still the real app -----
    page.goto(server["url"] + "/batch")
    page.get_by_role("heading", name="Batch scoring").wait_for(timeout=FIRST_LOAD_MS)
    settle(page, FIRST_LOAD_MS)
    sidebar = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Explore a pair" in sidebar and "common" not in sidebar, sidebar

    # ----- Home: loads the encoders and the head -----
    page.goto(server["url"])
    page.get_by_role("heading", name="Multimodal sentiment dashboard").wait_for(timeout=FIRST_LOAD_MS)
    page.get_by_text("The model serving now").wait_for(timeout=FIRST_LOAD_MS)
    settle(page, FIRST_LOAD_MS)
    assert_clean(page, server)
    nav = page.locator('[data-testid="stSidebarNav"]')
    for label in ("Home", "Explore a pair", "Batch scoring", "Correct the model"):
        assert nav.get_by_text(label, exact=True).count() == 1, label
    screenshot(page, shots, "1-home")

    # ----- Explore: type a text, upload a drawn PNG, analyse -----
    go(page, "Explore a pair", "Explore a pair")
    assert_clean(page, server)
    text = page.get_by_label("Text", exact=True)
    text.fill("What a gorgeous sunny day at the beach, I love it!")
    text.press("Control+Enter")
    settle(page)
    image = draw_image(tmp_path / "sunny_beach.png", "positive", seed=7, size=(160, 120))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_text("sunny_beach.png").first.wait_for()
    page.locator('[data-testid="stImage"]').first.wait_for()
    settle(page)
    page.get_by_role("button", name="Analyse").click()
    page.get_by_role("heading", name="Result").wait_for()
    _expect_three_way_chart(page)
    _expect_prediction(page)
    assert_clean(page, server)
    screenshot(page, shots, "2-explore")

    # ----- Explore: a built-in example pair replaces the typed text and the upload -----
    page.get_by_text("Try an example pair").click()
    storm = "Flooded street again, our car is ruined. Awful."
    for attempt in range(2):  # a click that overtakes the selectbox's own rerun uses the old choice
        choose(page, "Example", "storm — negative")
        page.get_by_role("button", name="Use this example").click()
        try:
            expect(text).to_have_value(storm, timeout=15_000)
            break
        except AssertionError:
            if attempt == 1:
                raise
            settle(page)
    expect(page.get_by_text("Image in use: storm.png (from the example)")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Analyse").click()
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    _expect_three_way_chart(page)
    _expect_prediction(page)
    assert_clean(page, server)
    screenshot(page, shots, "2b-explore-example")

    # ----- Batch scoring: opens on its CSV step -----
    go(page, "Batch scoring", "Batch scoring")
    page.get_by_text("Upload a CSV to begin").wait_for()
    assert_clean(page, server)
    screenshot(page, shots, "3-batch")

    # ----- Correct the model: encodes the example reference pairs on first open -----
    go(page, "Correct the model", "Correct the model")
    page.get_by_role("heading", name="3. Versions").wait_for(timeout=FIRST_LOAD_MS)
    settle(page, FIRST_LOAD_MS)
    assert_clean(page, server)
    screenshot(page, shots, "4-correct")

    print(f"browser walk took {time.monotonic() - started:.1f} s")


# (id, text, picture's mood, label, note): the last pair is labelled against what it plainly shows,
# so the model gets it wrong and it goes to the correction set.
BATCH = [("sunny", "What a gorgeous sunny day, I love it", "positive", "positive", "beach"),
         ("party", "Best party ever, so happy", "positive", "positive", "friends"),
         ("storm", "Awful storm, everything is ruined, I hate this", "negative", "negative", "flood"),
         ("rain", "Cold grey miserable rain again, I hate it", "negative", "negative", "commute"),
         ("bus", "The bus timetable for route 12", "neutral", "neutral", "transport"),
         ("picnic", "What a lovely sunny picnic, wonderful", "positive", "negative", "sarcasm?")]


def _batch_files(folder: Path) -> tuple[Path, list[Path]]:
    rows, images = [], []
    for seed, (pair_id, text, mood, label, note) in enumerate(BATCH):
        images.append(draw_image(folder / f"{pair_id}.png", mood, seed=seed, size=(120, 90)))
        rows.append({"id": pair_id, "text": text, "image": f"{pair_id}.png", "label": label, "note": note})
    csv = folder / "pairs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, images


def _download(page, button: str, folder: Path) -> pd.DataFrame:
    with page.expect_download() as download:
        page.get_by_role("button", name=button).click()
    path = folder / download.value.suggested_filename
    download.value.save_as(path)
    return pd.read_csv(path)


def _active_version(caption) -> str:
    """The version named in the correction page's 'Starting from the active version X.' caption."""
    return caption.inner_text().split("Starting from the active version ", 1)[1].split(".", 1)[0]


def _showing(page, n: int, total: int) -> None:
    expect(page.get_by_text(f"Showing {n:,} of {total:,} rows.")).to_be_visible()
    settle(page)


def test_a_batch_scored_filtered_downloaded_then_corrected(page, server, shots, tmp_path):
    started = time.monotonic()
    csv, images = _batch_files(tmp_path)
    total = len(BATCH)

    # ----- Batch: a CSV (with an extra column) and its pictures as uploaded files -----
    go(page, "Batch scoring", "Batch scoring")
    page.get_by_label("CSV file with one pair per row").locator("input[type=file]").set_input_files(str(csv))
    expect(page.get_by_text(f"{total} rows · columns: id, text, image, label, note")).to_be_visible()
    settle(page)
    page.get_by_text("Upload image files", exact=True).click()
    page.get_by_label("Image files").locator("input[type=file]").set_input_files([str(p) for p in images])
    expect(page.get_by_text(f"{total} image files found.")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Score the table").click()
    expect(page.get_by_text(f"Done: {total} / {total} rows")).to_be_visible()
    _showing(page, total, total)
    assert_clean(page, server)
    screenshot(page, shots, "5-batch-scored")

    # Every row, every input column: the CSV the user uploaded plus the model's answer.
    everything = _download(page, "Download the scored CSV", tmp_path)
    assert list(everything["id"]) == [row[0] for row in BATCH]
    assert list(everything["note"]) == [row[4] for row in BATCH]
    assert {"prediction", "confidence", "p_fused_positive", "label", "text", "image"} <= set(everything.columns)
    assert set(everything["prediction"]) <= set(LABELS)

    # ----- Batch: the filters narrow the table; the download of the rows shown follows them -----
    not_positive = everything[everything["prediction"] != "positive"]
    assert 0 < len(not_positive) < total, everything[["id", "prediction"]]
    page.get_by_role("button", name="Remove positive").click()
    _showing(page, len(not_positive), total)
    # The confidence range's lower end up to 80 % (keyboard: sixteen steps of 5).
    start = page.locator('input[type=range][aria-label="Confidence (%) — start"]')
    start.focus()
    for _ in range(16):
        start.press("ArrowRight")
    expect(page.locator('[data-testid="stSliderThumbValue"]').first).to_have_text("80")
    confident = not_positive[not_positive["confidence"] >= 0.8]
    _showing(page, len(confident), total)
    screenshot(page, shots, "6-batch-filtered")
    if len(confident) < total:
        shown = _download(page, f"Download the {len(confident):,} rows shown", tmp_path)
        assert list(shown["id"]) == list(confident["id"])
        assert list(shown["note"]) == list(confident["note"])
        assert list(shown.columns) == list(everything.columns)
    page.get_by_text("Only wrong predictions", exact=True).click()
    _showing(page, int((confident["prediction"] != confident["label"]).sum()), total)

    # ----- Batch → Correct: the wrongly predicted labelled pairs go to the correction set -----
    wrong_all = everything[everything["prediction"] != everything["label"]]
    assert len(wrong_all) >= 1, everything[["id", "prediction", "label"]]
    page.get_by_role("button", name=re.compile(r"Send the wrongly predicted pairs? \(\d+\) to the correction set")).click()
    expect(page.get_by_text(f"the correction set now holds {len(wrong_all)}")).to_be_visible()
    settle(page)

    # ----- Correct: train once on them -----
    go(page, "Correct the model", "Correct the model")
    expect(page.get_by_role("tab", name=f"Your correction set ({len(wrong_all)})")).to_be_visible()
    starting = page.get_by_text("Starting from the active version").filter(has_text="Reference set")
    first_version = _active_version(starting)
    # A few epochs are enough to see the run through (the default stops when the pair is right).
    page.get_by_text("Settings", exact=True).click()
    epochs = page.get_by_role("spinbutton", name="Max epochs")
    epochs.fill(str(CORRECTION_EPOCHS))
    epochs.press("Enter")
    expect(epochs).to_have_value(str(CORRECTION_EPOCHS))
    settle(page)
    page.get_by_role("button", name="Train correction").click()
    expect(page.get_by_text("Done in")).to_contain_text("epochs", timeout=FIRST_LOAD_MS)
    right = page.locator('[data-testid="stMetric"]').filter(has_text="Correction pairs right")
    expect(right.locator('[data-testid="stMetricValue"]')).to_contain_text(f"/ {len(wrong_all)}")
    charts_laid_out(page)
    assert_clean(page, server)
    screenshot(page, shots, "7-correct-trained")

    # ----- Correct: save (not active yet), activate, roll back -----
    page.get_by_label("Note for this version").fill("sarcastic picnics are negative")
    page.get_by_role("button", name="Save as a new version").click()
    saved = page.get_by_text("Saved version")
    expect(saved).to_contain_text("(not active: activate it below when ready)")
    new_version = saved.inner_text().split("Saved version ", 1)[1].split(" ", 1)[0]
    settle(page)
    expect(page.get_by_role("combobox", name="Version", exact=True)).to_have_value(new_version)
    assert _active_version(starting) == first_version
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text(f"Version {new_version} is now active for everyone.")).to_be_visible()
    expect(starting).to_contain_text(f"Starting from the active version {new_version}.")
    settle(page)
    expect(page.get_by_role("button", name="Activate")).to_be_disabled()
    screenshot(page, shots, "8-correct-activated")

    page.get_by_role("button", name="Roll back").click()
    expect(page.get_by_text(f"Rolled back: version {first_version} is active again.")).to_be_visible()
    expect(starting).to_contain_text(f"Starting from the active version {first_version}.")
    settle(page)
    assert_clean(page, server)
    screenshot(page, shots, "9-correct-rolled-back")

    print(f"batch and correction walk took {time.monotonic() - started:.1f} s")


# ----- a user's strings are data ------------------------------------------------------------------

@pytest.fixture()
def watched_address():
    """An HTTP server on this machine that counts the requests it gets: a post pointing a picture or a
    link at it must never make the browser call it."""
    calls: list[str] = []

    class Counting(BaseHTTPRequestHandler):
        def do_GET(self):
            calls.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


PNG_TYPE = "image/png"


def _png_bytes(folder: Path, mood: str, seed: int) -> bytes:
    return draw_image(folder / f"{mood}-{seed}.png", mood, seed=seed, size=(80, 60)).read_bytes()


def test_hostile_posts_names_and_columns_show_as_written(page, server, shots, tmp_path, watched_address):
    started = time.monotonic()
    address, calls = watched_address
    posts = [f"![pixelword]({address}/px.png)", f"[clickword]({address}/)", "**boldword** news",
             "<b>tagword</b> here"]
    picture = "**picword** <b>x.png"  # a browser sends a file's own name: no "/" in it
    column = "**note** <b>colword</b>"
    table_name = "**tableword**.csv"

    # ----- Explore: the uploaded picture's name (a fresh tab: this walk runs on its own too) -----
    page.goto(server["url"] + "/explore")
    page.get_by_role("heading", name="Explore a pair").wait_for(timeout=FIRST_LOAD_MS)
    settle(page, FIRST_LOAD_MS)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        {"name": picture, "mimeType": PNG_TYPE, "buffer": _png_bytes(tmp_path, "positive", 1)})
    expect(page.get_by_text(f"Image in use: {picture} (your upload)")).to_be_visible()
    settle(page)

    # ----- Batch: hostile posts, a hostile picture name and column name, unlabelled -----
    go(page, "Batch scoring", "Batch scoring")
    rows = pd.DataFrame({"id": [f"p{k}" for k in range(len(posts))], "text": posts,
                         "image": [picture, "a.png", picture, "a.png"], column: "x"})
    page.get_by_label("CSV file with one pair per row").locator("input[type=file]").set_input_files(
        {"name": table_name, "mimeType": "text/csv", "buffer": rows.to_csv(index=False).encode()})
    expect(page.get_by_text(f"columns: id, text, image, {column}")).to_be_visible()
    settle(page)
    page.get_by_text("Upload image files", exact=True).click()
    page.get_by_label("Image files").locator("input[type=file]").set_input_files(
        [{"name": picture, "mimeType": PNG_TYPE, "buffer": _png_bytes(tmp_path, "positive", 2)},
         {"name": "a.png", "mimeType": PNG_TYPE, "buffer": _png_bytes(tmp_path, "negative", 3)}])
    expect(page.get_by_text("2 image files found.")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Score the table").click()
    expect(page.get_by_text(f"Done: {len(posts)} / {len(posts)} rows")).to_be_visible()
    page.get_by_role("heading", name="Label where it pays").wait_for()
    assert_clean(page, server)
    screenshot(page, shots, "10-hostile-rows")

    main = page.locator('[data-testid="stMain"]')
    # No request left the page for the address the posts name; nothing the users wrote became a
    # picture, a link or bold text.
    assert calls == [], calls
    assert page.locator(f'img[src^="{address}"]').count() == 0
    assert page.locator(f'a[href^="{address}"]').count() == 0
    made_bold = main.locator("b, strong").filter(has_text=re.compile("boldword|tagword|picword|colword|tableword"))
    assert made_bold.count() == 0, made_bold.all_inner_texts()
    listed = [t.strip() for t in main.locator('[data-testid="stText"]').all_inner_texts()]
    assert sorted(listed) == sorted(posts), listed  # "Label where it pays": each post in full, as typed
    expect(main.get_by_text(f"{table_name} · head version")).to_be_visible()
    assert main.get_by_text(picture).count() >= 2  # under the posts that name it
    print(f"hostile rows walk took {time.monotonic() - started:.1f} s")
