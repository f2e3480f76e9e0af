"""An analyst's and an operator's walk through "Why, and which version" in a real browser (headless
Chromium, its own Streamlit server, see tests/browser.py): the drivers of a run with a planted
hashtag and a click on it that filters the page, the themes of a run found once on the page, and two
head versions compared on a run's posts from the link the Correct page gives.

The runs, their stored text features and the two versions are written into the server's MMSA_HOME
(tests/planted_insights.py); no model is loaded. Skips with the reason when /usr/bin/chromium or
Playwright is missing."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import assert_clean, charts_laid_out, expect, screenshot, settle
from tests.conftest import fake_card
from tests.planted_insights import (
    B_CHANGES,
    HASHTAG,
    HASHTAG_POSTS,
    hashtag_run,
    linear_heads,
    topic_run,
    two_version_run,
)


@pytest.fixture(scope="module")
def planted(server):
    """The three runs and two versions, saved in the server's own MMSA_HOME."""
    from core.registry import open_registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMSA_HOME", str(server["log"].parent))   # the server's home holds its log
        hashtags, _ = hashtag_run()
        topics, _ = topic_run()
        registry = open_registry()
        a = registry.save(linear_heads(0).tensors(), fake_card(), note="A")
        b = registry.save(linear_heads(3).tensors(), fake_card(), note="B")
        versions, *_ = two_version_run(version=a)
    return {"hashtags": hashtags, "topics": topics, "versions": versions, "a": a, "b": b}


def _metric(tab, label: str):
    return tab.locator('[data-testid="stMetric"]').filter(has_text=label).first.locator('[data-testid="stMetricValue"]')


def test_drivers_a_click_on_a_term_themes_and_two_versions(page, server, shots, planted):
    started = time.monotonic()
    term = HASHTAG.lower()

    # ----- Drivers: the planted hashtag tops the negative ones; a click on it searches for it -----
    page.goto(f"{server['url']}/analyse?run={planted['hashtags'].id}")
    page.get_by_role("heading", name="Why, and which version").wait_for()
    charts_laid_out(page)
    assert_clean(page, server)
    expect(page.get_by_text("negative · ", exact=False).first).to_be_visible()
    pills = page.locator('[data-testid="stButtonGroup"]').first
    screenshot(page, shots, "insights-1-drivers")
    pills.get_by_text(term, exact=True).click()
    expect(_metric(page, "Posts")).to_have_text(f"{HASHTAG_POSTS:,}")
    settle(page)
    assert page.get_by_role("textbox", name="Search the text").input_value() == term
    assert parse_qs(urlparse(page.url).query)["q"] == [term]
    assert_clean(page, server)

    # ----- Themes: found once on the page, then listed with their mix -----
    page.goto(f"{server['url']}/analyse?run={planted['topics'].id}&view=themes")
    page.get_by_role("button", name="Find the themes").click()
    expect(page.get_by_role("button", name="Find them again")).to_be_visible()
    expect(page.get_by_role("button", name="Find the themes")).to_have_count(0)
    charts_laid_out(page)
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="top terms")
    expect(table).to_be_visible()
    assert page.locator(".js-plotly-plot").count() >= 3     # breakdown, over time, themes (and their trend)
    assert_clean(page, server)
    screenshot(page, shots, "insights-2-themes")

    # ----- Compare versions: the Correct page's link opens the candidate against the run's version -----
    page.goto(f"{server['url']}/analyse?run={planted['versions'].id}&compare={planted['b']}")
    page.get_by_role("button", name="Compare them on the 200 filtered posts").click()
    expect(_metric(page, "Changed class")).to_have_text(f"{len(B_CHANGES)}")
    expect(_metric(page, "Posts compared")).to_have_text("200")
    expect(page.get_by_text("McNemar's test (exact binomial)", exact=False)).to_be_visible()
    expect(page.get_by_role("link", name="in Explore")).to_be_visible()
    charts_laid_out(page)
    assert_clean(page, server)
    screenshot(page, shots, "insights-3-compare")
    print(f"insights walk took {time.monotonic() - started:.1f} s")
