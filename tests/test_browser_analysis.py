"""An analyst's walk in a real browser (headless Chromium, its own Streamlit server, see
tests/browser.py): score a table with brand and date columns on the batch page, follow the link to
the saved run, break it down by brand and filter by a click on a bar, look at it week by week, search a
hashtag, open a picture of the gallery in Explore, and download a view's table and the report.

Skips with the reason when /usr/bin/chromium or Playwright is missing."""
from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd

from tests.browser import FIRST_LOAD_MS, assert_clean, charts_laid_out, expect, screenshot, settle
from tests.conftest import draw_image

# (id, text, picture's mood, brand, date): two brands, three weeks, one date that does not read.
POSTS = [("p1", "Sunny day at the beach #sunny", "positive", "Acme", "2024-03-04"),
         ("p2", "Best party ever #sunny", "positive", "Acme", "2024-03-05"),
         ("p3", "Lovely picnic in the park", "positive", "Acme", "2024-03-12"),
         ("p4", "Awful storm, everything ruined", "negative", "Bolt", "2024-03-12"),
         ("p5", "Cold grey miserable rain again", "negative", "Bolt", "2024-03-19"),
         ("p6", "Flooded street, I hate this #storm", "negative", "Bolt", "next week"),
         ("p7", "The bus timetable for route 12", "neutral", "Bolt", "2024-03-19"),
         ("p8", "What a gorgeous sunset #sunny", "positive", "Acme", "2024-03-20")]


def _table(folder: Path) -> tuple[Path, list[Path]]:
    rows, images = [], []
    for seed, (post, text, mood, brand, day) in enumerate(POSTS):
        images.append(draw_image(folder / f"{post}.png", mood, seed=seed, size=(120, 90)))
        rows.append({"id": post, "text": text, "image": f"{post}.png", "brand": brand, "date": day})
    csv = folder / "posts.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, images


def _url_params(tab) -> dict[str, list[str]]:
    return parse_qs(urlparse(tab.url).query, keep_blank_values=True)


def _posts(tab) -> int:
    metric = tab.locator('[data-testid="stMetric"]').filter(has_text="Posts").first
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text().replace(",", ""))


def test_score_then_analyse_by_brand_over_time_search_gallery_and_download(page, server, shots, tmp_path):
    started = time.monotonic()
    csv, images = _table(tmp_path)

    # ----- Batch: score the table; the finished scoring is kept as a run -----
    page.goto(server["url"] + "/batch")
    page.get_by_role("heading", name="Batch scoring").wait_for(timeout=FIRST_LOAD_MS)
    settle(page, FIRST_LOAD_MS)
    page.get_by_label("CSV file with one pair per row").locator("input[type=file]").set_input_files(str(csv))
    expect(page.get_by_text(f"{len(POSTS)} rows · columns: id, text, image, brand, date")).to_be_visible()
    settle(page)
    page.get_by_text("Upload image files", exact=True).click()
    page.get_by_label("Image files").locator("input[type=file]").set_input_files([str(p) for p in images])
    expect(page.get_by_text(f"{len(POSTS)} image files found.")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Score the table").click()
    expect(page.get_by_text(f"Done: {len(POSTS)} / {len(POSTS)} rows")).to_be_visible()
    settle(page)
    page.get_by_role("link", name=re.compile("Analyse this run")).click()

    # ----- Analyse: the run opens on its own, broken down by brand and over the date column -----
    page.get_by_role("heading", name="Analyse a run").wait_for()
    charts_laid_out(page)
    assert_clean(page, server)
    run_id = _url_params(page)["run"][0]
    assert _posts(page) == len(POSTS)
    assert _url_params(page)["by"] == ["brand"] and _url_params(page)["over"] == ["date"]
    groups = page.locator('[data-testid="stDataFrame"]').first
    expect(groups).to_contain_text("Acme")
    expect(groups).to_contain_text("Bolt")
    screenshot(page, shots, "analysis-1-breakdown")

    # Each view's table downloads (read back: one row per brand, the posts adding up).
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the breakdown table (CSV)").click()
    table = pd.read_csv(download.value.path(), encoding="utf-8-sig")
    assert sorted(table["group"]) == ["Acme", "Bolt"] and table["posts"].sum() == len(POSTS)

    # ----- Over time: weekly shares; the cell that is not a date is counted, not dropped -----
    expect(page.get_by_text("1 of the filtered posts have no readable date here (0 blank, 1 unreadable)")).to_be_visible()
    expect(page.get_by_text("Unreadable cells, e.g.: 'next week'")).to_be_visible()
    assert page.locator(".js-plotly-plot").count() == 2

    # ----- A click on a brand keeps only its posts, in every view and in the address -----
    acme = int(table.loc[table["group"] == "Acme", "posts"].iloc[0])
    chart = page.locator(".js-plotly-plot").first
    # The net-sentiment point (always drawn, unlike a zero-width bar), in the table's order.
    point = chart.locator(".scatterlayer .trace .point").nth(list(table["group"]).index("Acme"))
    box = point.bounding_box()  # plotly's drag layer takes the pointer: click where the point is drawn
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Posts").first).to_contain_text(str(acme))
    charts_laid_out(page)
    assert _url_params(page)["f:brand"] == ["Acme"]
    screenshot(page, shots, "analysis-2-clicked-brand")

    # ----- Search: a hashtag, counted exactly -----
    search = page.get_by_role("textbox", name="Search the text")
    search.fill("#sunny")
    search.press("Enter")
    expect(page.get_by_text("Search matches (posts): #sunny: 3 · all terms: 3")).to_be_visible()
    charts_laid_out(page)
    assert _posts(page) == 3 and _url_params(page)["q"] == ["#sunny"]
    assert_clean(page, server)

    # ----- Gallery: the matching posts' pictures; one opens in Explore with its text and picture -----
    expect(page.get_by_text("3 filtered posts with a picture.")).to_be_visible()
    gallery_images = page.locator('[data-testid="stImage"]')
    expect(gallery_images).to_have_count(3)
    screenshot(page, shots, "analysis-3-search-gallery")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the HTML report (these views, these filters)").click()
    report = Path(download.value.path()).read_text()
    assert "text search: #sunny" in report and "brand: Acme" in report and "Over time" in report
    page.get_by_role("link", name="Open in Explore").first.click()
    page.get_by_role("heading", name="Explore a pair").wait_for()
    settle(page)
    text = page.get_by_label("Text", exact=True)
    assert "#sunny" in text.input_value()
    expect(page.get_by_text(re.compile(r"Image in use: p\d\.png"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Post p\d of the run posts"))).to_be_visible()
    assert_clean(page, server)

    # ----- The deep link brings the same answer back -----
    page.goto(f"{server['url']}/analyse?run={run_id}&q=%23sunny&f:brand=Acme")
    expect(page.get_by_text("Search matches (posts): #sunny: 3 · all terms: 3")).to_be_visible()
    charts_laid_out(page)
    assert _posts(page) == 3
    print(f"analysis walk took {time.monotonic() - started:.1f} s")
