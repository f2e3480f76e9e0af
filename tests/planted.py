"""Scored tables with effects planted in them, for the analysis and run-store stories: a brand whose
posts are all negative, a week of mostly negative posts, a hashtag in a known number of posts, date
cells that cannot be read. Scores are drawn, not computed: these tests are about the analysis."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.scoring.batch import result_columns

BRANDS = ["Acme", "Bolt", "Cora", "Dune", "Echo", "Fern", "Gale", "Hive", "Iris", "Jade", "Kite", "Lark"]
ALL_NEGATIVE = "Dune"
PLANTED_WEEK = "2024-03-04"      # a Monday: most posts of this week are negative
FLOOD_POSTS = 37                 # posts with "#Flood again!" (the whole hashtag)
FLOODING_POSTS = 5               # posts with "#flooding today" (another hashtag: not #flood)
WORD_FLOOD_POSTS = 11            # posts with "Flood warning" (the word, no hashtag)
UNREADABLE_DATES = ["not a date", "31/31/2024", "soon"]
BLANK_DATES = 4
ERROR_ROWS = 3                   # rows the scorer marked as errors (no prediction)


def planted_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``n`` scored posts over the first half of 2024 with ``brand``, ``date`` and ``campaign`` columns and
    the planted effects above (see the module docstring)."""
    rng = np.random.default_rng(seed)
    brand = rng.choice(BRANDS, n, p=_weights(len(BRANDS)))
    day = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 182, n), unit="D")
    prediction = rng.choice(["negative", "neutral", "positive"], n, p=[0.3, 0.15, 0.55])
    week = (day - pd.to_timedelta(day.dayofweek, unit="D")).strftime("%Y-%m-%d").to_numpy()
    planted = week == PLANTED_WEEK
    prediction[planted] = np.where(rng.random(planted.sum()) < 0.9, "negative", "positive")
    prediction[brand == ALL_NEGATIVE] = "negative"
    texts = [f"post number {i} about {b.lower()}" for i, b in enumerate(brand)]
    order = rng.permutation(n)
    for k, i in enumerate(order[:FLOOD_POSTS + FLOODING_POSTS + WORD_FLOOD_POSTS]):
        texts[i] += (" #Flood again!" if k < FLOOD_POSTS else " #flooding today" if k < FLOOD_POSTS + FLOODING_POSTS
                     else " Flood warning")
    dates = day.strftime("%Y-%m-%d").to_numpy().astype(object)
    # Bad dates only outside the planted week, so the week keeps every post.
    unplanted = np.flatnonzero(~planted)
    for k, i in enumerate(unplanted[:len(UNREADABLE_DATES) + BLANK_DATES]):
        dates[i] = UNREADABLE_DATES[k] if k < len(UNREADABLE_DATES) else ""
    frame = pd.DataFrame({c: None for c in result_columns()}, index=range(n))
    frame["row"] = np.arange(n)
    frame["id"] = [f"post-{i}" for i in range(n)]
    frame["text"] = texts
    frame["image"] = [f"{i}.jpg" for i in range(n)]
    frame["label"] = np.where(rng.random(n) < 0.5, prediction, rng.choice(["negative", "neutral", "positive"], n))
    confidence = rng.uniform(0.34, 1.0, n)
    frame["prediction"] = prediction
    frame["confidence"] = confidence
    for head in ("text", "image", "fused"):
        for c in ("negative", "neutral", "positive"):
            frame[f"p_{head}_{c}"] = np.where(prediction == c, confidence, (1 - confidence) / 2)
    frame["prediction_source"] = "fused"
    frame["conflict"] = rng.random(n) < 0.1
    frame["status"] = "ok"
    frame["message"] = ""
    frame["brand"] = brand
    frame["date"] = dates
    frame["campaign"] = rng.choice(["spring", "summer", ""], n)
    # Rows the scorer could not read: never counted by any view, even where they match.
    bad = pd.DataFrame({c: None for c in frame.columns}, index=range(ERROR_ROWS))
    bad["row"] = np.arange(n, n + ERROR_ROWS)
    bad["id"] = [f"bad-{k}" for k in range(ERROR_ROWS)]
    bad["text"] = "broken picture #flood"
    bad["conflict"] = False
    bad["status"] = "error"
    bad["message"] = "image file not found: 'x.jpg'"
    bad["brand"] = ALL_NEGATIVE
    bad["date"] = PLANTED_WEEK
    bad["campaign"] = "spring"
    return pd.concat([frame, bad], ignore_index=True)


def _weights(k: int) -> np.ndarray:
    w = np.linspace(2.0, 1.0, k)
    return w / w.sum()
