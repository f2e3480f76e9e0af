"""Drivers, themes and version comparisons on a saved run's filtered posts, as the analysis page asks for
them: two brands side by side, this week against the last, the themes counted over the posts a filter
keeps with their trend, and the changed posts listed with both versions' classes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import config
from core.analysis import Filters, RunQuery
from core.analysis.filters import FilterError
from core.features.store import FeatureStore
from core.insights.run_compare import compare_on_run
from core.insights.run_drivers import class_drivers, period_slices, period_starts, value_slices
from core.insights.run_themes import run_themes, theme_view, themes_folder
from core.registry import write_version_folder
from core.runs import save_run
from tests.conftest import fake_card
from tests.planted import UNREADABLE_DATES, planted_frame
from tests.planted_insights import B_CHANGES, WORDS, topic_run, two_version_run


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def sliced_run(home):
    """Chatter posts where 60 Acme posts mention @acmehelp, 60 Bolt posts say "delivery", and the posts
    of the week of 11 March 2024 talk about a #recall."""
    frame = planted_frame(2000)
    rng = np.random.default_rng(3)
    ok = frame["status"] == "ok"
    frame.loc[ok, "text"] = [" ".join(rng.choice(WORDS, 8)) for _ in range(int(ok.sum()))]
    for brand, term in (("Acme", " @acmehelp"), ("Bolt", " delivery")):
        chosen = frame.index[ok & (frame["brand"] == brand)][:60]
        frame.loc[chosen, "text"] += term
    week = ok & frame["date"].between("2024-03-11", "2024-03-17")
    frame.loc[week, "text"] += " #recall"
    return save_run(frame, source="posts.csv", engine="cli"), frame


def test_two_brands_side_by_side_with_example_posts_from_the_run(sliced_run):
    run, frame = sliced_run
    with RunQuery.for_run(run) as query:
        drivers = value_slices(query, Filters(), "brand", "Acme", "Bolt")
        assert list(drivers.tables) == ["Acme", "Bolt"]
        acme, bolt = drivers.tables["Acme"].iloc[0], drivers.tables["Bolt"].iloc[0]
        assert (acme.term, acme.n, bolt.term, bolt.n) == ("@acmehelp", 60, "delivery", 60)
        rows = frame.set_index("row")
        assert all(rows.loc[r, "brand"] == "Acme" for r in acme.example_rows)
        assert all("@acmehelp" in text for text in acme.example_texts) and len(acme.example_texts) == 3
        scored = rows[rows["status"] == "ok"]
        assert drivers.sizes == {"Acme": int((scored["brand"] == "Acme").sum()),
                                 "Bolt": int((scored["brand"] == "Bolt").sum())}
        # The page's filters apply before the slices: only posts without the mention.
        filtered = value_slices(query, Filters(search="-@acmehelp"), "brand", "Acme", "Bolt")
        assert "@acmehelp" not in set(filtered.tables["Acme"]["term"])
        with pytest.raises(FilterError, match="two different values"):
            value_slices(query, Filters(), "brand", "Acme", "Acme")


def test_this_week_against_the_week_before(sliced_run):
    run, frame = sliced_run
    with RunQuery.for_run(run) as query:
        starts = period_starts(query, Filters(), "date", "W")
        assert pd.Timestamp("2024-03-11") in starts and starts == sorted(starts)
        drivers = period_slices(query, Filters(), "date", "W", "2024-03-11")
        assert list(drivers.tables) == ["week of 2024-03-11", "week of 2024-03-04"]
        top = drivers.tables["week of 2024-03-11"].iloc[0]
        in_week = frame["date"].between("2024-03-11", "2024-03-17") & (frame["status"] == "ok")
        assert (top.term, top.n) == ("#recall", int(in_week.sum()))
        latest = period_slices(query, Filters(), "date", "W")     # default: the latest week with posts
        assert list(latest.tables)[0] == f"week of {starts[-1].date().isoformat()}"
        labelled = class_drivers(query, Filters(), of="label")
        assert list(labelled.tables) == ["negative", "neutral", "positive"]


def test_kept_themes_are_counted_over_the_filtered_posts_with_their_trend(home):
    run, copies = topic_run()
    themes = run_themes(run, FeatureStore(config.feature_store_path()))
    with RunQuery.for_run(run) as query:
        everything = theme_view(query, Filters(), themes, themes_folder(run), date_column="date")
        assert everything.table["n"].sum() == everything.n == run.record.scored
        assert everything.table.iloc[-1]["name"] == "no theme" or (everything.table["id"] >= 0).all()
        row = everything.table.iloc[0]
        assert row.share_lo < row.share < row.share_hi and row.n_classified == row.n
        assert np.allclose(everything.trend.groupby("period")["share"].sum(), 1.0)
        assert f"{len(UNREADABLE_DATES) + 4} posts have no date that could be read and are not in the trend" \
            in everything.notes
        acme = theme_view(query, Filters(values={"brand": ["Acme"]}), themes, themes_folder(run))
        assert acme.n == query.count(Filters(values={"brand": ["Acme"]})) == acme.table["n"].sum()
        assert acme.trend is None


def test_a_run_scored_on_a_gpu_under_autocast_has_its_themes_found_from_the_vectors_it_stored(home):
    run, _ = topic_run(feature_suffix=":autocast-bf16")
    themes = run_themes(run, FeatureStore(config.feature_store_path()))
    assert themes.assignment.size == run.record.scored and (themes.assignment >= 0).mean() > 0.9


def test_the_changed_posts_are_listed_with_both_versions_classes(home, tmp_path):
    run, a_tensors, b_tensors, classes = two_version_run()
    write_version_folder(tmp_path / "a", a_tensors, fake_card())
    write_version_folder(tmp_path / "b", b_tensors, fake_card())
    with RunQuery.for_run(run) as query:
        result = compare_on_run(query, Filters(), str(tmp_path / "a"), str(tmp_path / "b"),
                                FeatureStore(config.feature_store_path()))
        changed = result.changed
        assert changed["row"].tolist() == sorted(B_CHANGES)
        assert [(a, b) for a, b in zip(changed["A"], changed["B"])] == [B_CHANGES[r] for r in sorted(B_CHANGES)]
        assert set(changed["label"]) == {"positive"} and changed["text"].str.startswith("post ").all()
        only = compare_on_run(query, Filters(search="-post"), str(tmp_path / "a"), str(tmp_path / "b"),
                              FeatureStore(config.feature_store_path()))
        assert only.comparison.n == 0 and only.changed.empty
