"""In a real browser (headless Chromium, the helpers and server of ``tests/browser.py``): a user uploads a
labelled CSV of their own posts, without pictures, on *Correct the model*, adapts the model to them,
reads the held-out figures and the learning curve, and saves the result as a version.
Skips with the reason when /usr/bin/chromium or Playwright is missing."""
from __future__ import annotations

import time

import pandas as pd

from tests.browser import (
    FIRST_LOAD_MS,
    assert_clean,
    charts_laid_out,
    expect,
    go,
    screenshot,
    settle,
)
from tests.conftest import NEGATIVE_TEXTS, NEUTRAL_TEXTS, POSITIVE_TEXTS


def test_adapt_to_a_text_only_csv_and_save_it(page, server, shots, tmp_path):
    started = time.monotonic()
    rows = [{"text": f"{text} (post {k})", "label": label}
            for label, options in (("positive", POSITIVE_TEXTS), ("negative", NEGATIVE_TEXTS),
                                   ("neutral", NEUTRAL_TEXTS))
            for k, text in enumerate((options * 5)[:10])]
    csv = tmp_path / "our posts.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)

    page.goto(server["url"])
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=FIRST_LOAD_MS)
    go(page, "Correct the model", "Correct the model")
    page.get_by_label("Labelled CSV of your posts").locator("input[type=file]").set_input_files(str(csv))
    settle(page)
    page.locator(".st-key-adapt_run button").click()
    expect(page.get_by_text("Your held-out posts, adapted")).to_be_visible()
    expect(page.get_by_text("30 labelled posts (none with a picture")).to_be_visible()
    expect(page.locator(".js-plotly-plot").filter(has_text="Learning curve")).to_have_count(1)
    charts_laid_out(page)
    assert_clean(page, server)
    screenshot(page, shots, "adapt-1-result")

    page.locator(".st-key-adapt_note input").fill("our posts")
    page.locator(".st-key-adapt_note input").press("Enter")
    settle(page)
    page.locator(".st-key-adapt_save button").click()
    expect(page.get_by_text("Saved version")).to_be_visible()
    settle(page)
    assert_clean(page, server)
    screenshot(page, shots, "adapt-2-saved")
    print(f"adaptation walk: {time.monotonic() - started:.1f} s")
