"""Themes: an analyst sees what the posts talk about, each theme named by its terms, with its size,
its sentiment mix and its trend; posts that fit no theme are shown as such, and the themes are kept
with the run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features.store import FeatureStore
from core.insights.features import StoredVectors, text_keys
from core.insights.theme_store import load_assignment, load_themes, save_themes
from core.insights.themes import NO_THEME, ThemeConfig, find_themes

TOPICS = [["rain", "flood", "storm"], ["beach", "sun", "holiday"], ["coffee", "morning", "cup"],
          ["match", "goal", "team"], ["concert", "music", "band"], ["train", "delay", "station"]]
FILLER = ["the", "a", "today", "really", "so", "and"]


def planted(n: int = 1200, seed: int = 0, dim: int = 96):
    """Posts on six topics: each topic's vectors around its own centre, its texts from its own words."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(TOPICS), dim))
    topic = rng.integers(0, len(TOPICS), n)
    vectors = (centres[topic] + rng.normal(scale=0.5, size=(n, dim))).astype(np.float32)
    texts = [" ".join([*rng.choice(TOPICS[t], 3), *rng.choice(FILLER, 2)]) + f" {rng.integers(1e6)}" for t in topic]
    classes = rng.choice(["negative", "neutral", "positive"], n).astype(object)
    return vectors, texts, topic, classes


def theme_of_topic(themes, topic) -> dict[int, int]:
    """The theme most of each topic's posts went to, and check that theme is made of that topic."""
    mapping = {}
    for t in range(len(TOPICS)):
        ids, counts = np.unique(themes.assignment[topic == t], return_counts=True)
        mapping[t] = int(ids[np.argmax(counts)])
    return mapping


def test_planted_topics_come_back_as_themes_named_by_their_words():
    vectors, texts, topic, classes = planted()
    themes = find_themes(vectors, texts, classes=classes)
    assert themes.k == 6 and max(themes.silhouette, key=themes.silhouette.get) == 6
    mapping = theme_of_topic(themes, topic)
    assert len(set(mapping.values())) == 6 and NO_THEME not in mapping.values()
    table = themes.table.set_index("id")
    for t, theme in mapping.items():
        assert (themes.assignment[topic == t] == theme).mean() > 0.95
        assert set(table.loc[theme, "terms"][:3]) == set(TOPICS[t])
    assert list(themes.table["n"][:-1]) == sorted(themes.table["n"][:-1], reverse=True)  # largest first


def test_duplicated_posts_land_in_one_theme():
    vectors, texts, topic, classes = planted(seed=1)
    copies = np.arange(200, 350)
    vectors[copies] = vectors[200]
    for i in copies:
        texts[i] = "Our flight got cancelled AGAIN #Skyfail"
    themes = find_themes(vectors, texts, classes=classes)
    landed = set(themes.assignment[copies].tolist())
    assert len(landed) == 1 and NO_THEME not in landed


def test_the_theme_sizes_add_up_to_the_posts_with_a_no_theme_entry_for_posts_that_fit_none():
    vectors, texts, topic, classes = planted(seed=2)
    rng = np.random.default_rng(9)
    strays = np.arange(10)
    vectors[strays] = rng.normal(scale=4.0, size=(10, vectors.shape[1]))  # far from every topic
    vectors[10:13] = 0.0                                                  # no text features at all
    themes = find_themes(vectors, texts, classes=classes)
    assert (themes.assignment[strays] == NO_THEME).all() and (themes.assignment[10:13] == NO_THEME).all()
    assert (themes.assignment == NO_THEME).mean() < 0.05                  # the rule does not eat the themes
    rows = themes.to_json()
    assert sum(r["n"] for r in rows) == len(texts)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-5)
    assert rows[-1]["id"] == NO_THEME and themes.table.iloc[-1]["name"] == "no theme"
    assert "3 posts have no text features and fit no theme" in themes.notes


def test_the_number_of_themes_can_be_set():
    vectors, texts, _, _ = planted(seed=3)
    themes = find_themes(vectors, texts, config=ThemeConfig(n_themes=3))
    assert themes.k == 3 and themes.silhouette == {}
    assert set(themes.assignment) <= {0, 1, 2, NO_THEME}


def test_a_theme_of_negative_posts_shows_its_mix_with_intervals():
    vectors, texts, topic, classes = planted(seed=4)
    classes[topic == 0] = "negative"
    themes = find_themes(vectors, texts, classes=classes)
    row = themes.table.set_index("id").loc[theme_of_topic(themes, topic)[0]]
    assert row.share_negative > 0.95 and row.lo_negative < row.share_negative <= row.hi_negative
    assert row.net == pytest.approx(row.share_positive - row.share_negative) and row.net < -0.9
    assert row.n_negative + row.n_neutral + row.n_positive == row.n_classified


def test_a_theme_that_appears_in_one_week_shows_in_the_trend_and_unreadable_dates_are_counted():
    vectors, texts, topic, classes = planted(seed=5)
    dates = pd.Series(pd.Timestamp("2024-03-04") + pd.to_timedelta(np.arange(len(texts)) % 28, unit="D"))
    dates[topic == 3] = pd.Timestamp("2024-03-13")        # a Wednesday: week of Monday 11 March
    dates = dates.astype(str).astype(object)
    dates[:4] = "not a date"
    themes = find_themes(vectors, texts, dates=dates)
    match = theme_of_topic(themes, topic)[3]
    trend = themes.trend[themes.trend["theme"] == match]
    assert set(trend["period"]) == {"2024-03-11"}
    assert set(themes.trend["period"]) == {"2024-03-04", "2024-03-11", "2024-03-18", "2024-03-25"}
    shares = themes.trend.groupby("period")["share"].sum()
    assert np.allclose(shares, 1.0)
    assert "4 posts have no date that could be read and are not in the trend" in themes.notes


def test_themes_are_kept_beside_the_run_and_read_back(tmp_path):
    vectors, texts, topic, classes = planted(n=600, seed=6)
    themes = find_themes(vectors, texts, classes=classes, dates=["2024-01-01"] * 600)
    assert load_themes(tmp_path) is None
    save_themes(themes, tmp_path / "run", rows=np.arange(600) + 1000)
    again = load_themes(tmp_path / "run")
    assert load_assignment(tmp_path / "run")["row"].tolist() == list(range(1000, 1600))
    assert np.array_equal(again.assignment, themes.assignment) and again.k == themes.k
    assert again.to_json() == themes.to_json() and again.config == themes.config
    pd.testing.assert_frame_equal(again.table, themes.table, check_dtype=False)
    pd.testing.assert_frame_equal(again.trend, themes.trend, check_dtype=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["themes.json", "themes.parquet"]


def test_themes_read_the_run_s_vectors_from_the_feature_store(tmp_path):
    vectors, texts, topic, _ = planted(n=600, seed=7)
    store = FeatureStore(tmp_path / "features.sqlite")
    keys = text_keys(texts)
    store.put_many("text:test:1", keys[:590], vectors[:590])       # the last ten were never stored
    source = StoredVectors(store, "text:test:1", keys, vectors.shape[1])
    from_store = find_themes(source, texts)
    in_memory = find_themes(np.vstack([vectors[:590], np.zeros((10, vectors.shape[1]), np.float32)]), texts)
    assert np.array_equal(from_store.assignment, in_memory.assignment)
    assert (from_store.assignment[590:] == NO_THEME).all()


def test_a_run_of_a_few_posts_still_gets_themes():
    themes = find_themes(np.eye(3, dtype=np.float32), ["rain", "sun", "cup"])
    assert sum(r["n"] for r in themes.to_json()) == 3
    assert len(find_themes(np.zeros((0, 4), np.float32), []).table) == 0
