"""Drivers of a saved run's filtered posts (``core.insights.drivers`` on ``core.insights.run_posts``):
per predicted class, per labelled class, and two slices side by side — two values of a column (brand A
against brand B) or one period of a date column against the period before it.

Each driver table gains the example posts as the run's row numbers (``example_rows``) and texts
(``example_texts``), the most confident first, so a page can show them and open them in Explore.

    with RunQuery.for_run(run) as query:
        drivers = class_drivers(query, Filters(search="#flood"))
        drivers.to_json()   # {"negative": [{"term", "score", "n"}, …], "neutral": […], "positive": […]}
"""
from __future__ import annotations

import pandas as pd

from core.analysis.dates import FREQS
from core.analysis.engine import RunQuery
from core.analysis.filters import FilterError, Filters, value_expression
from core.insights.drivers import DEFAULT_MIN_POSTS, DEFAULT_TOP, Drivers, find_drivers, slice_drivers
from core.insights.run_posts import filtered_posts, label_classes
from core.io.labels import LABELS

GROUPINGS = {"prediction": "predicted class", "label": "labelled class"}
_OFFSETS = {"D": pd.DateOffset(days=1), "W": pd.DateOffset(weeks=1), "M": pd.DateOffset(months=1)}
EXAMPLE_CHARS = 280  # an example post is shown up to this many characters


def class_drivers(query: RunQuery, filters: Filters | None, *, of: str = "prediction", top: int = DEFAULT_TOP,
                  min_posts: int = DEFAULT_MIN_POSTS) -> Drivers:
    """The terms of each class (``of``: the predicted class, or the label) among the filtered posts, one
    table per class in label order (empty where no post has that class)."""
    if of not in GROUPINGS:
        raise FilterError(f"drivers of {of!r}: use one of {', '.join(GROUPINGS)}")
    if of == "label" and query.label_column is None:
        raise FilterError("this run has no label column: drivers per labelled class need one")
    posts = filtered_posts(query, filters)
    groups = posts["prediction"].tolist() if of == "prediction" else label_classes(posts["label"])
    drivers = find_drivers(posts["text"].tolist(), groups, order=LABELS, top=top, min_posts=min_posts,
                           example_priority=posts["confidence"].to_numpy(dtype=float))
    return _with_examples(drivers, posts)


def value_slices(query: RunQuery, filters: Filters | None, column: str, a: str | None, b: str | None, *,
                 top: int = DEFAULT_TOP, min_posts: int = DEFAULT_MIN_POSTS) -> Drivers:
    """The filtered posts whose ``column`` is ``a`` against those where it is ``b`` (None: blank cells),
    each slice's terms against the other's; the tables are named by the two values."""
    if column not in query.columns:
        raise FilterError(f"this run has no column {column!r}")
    if a == b:
        raise FilterError("choose two different values to compare")
    posts = filtered_posts(query, filters, extra={"slice": value_expression(column)})
    values = posts["slice"].astype(object).where(posts["slice"].notna(), None)
    names = (_value_name(a), _value_name(b))
    drivers = slice_drivers(posts["text"].tolist(), (values == a).to_numpy() if a is not None else values.isna().to_numpy(),
                            (values == b).to_numpy() if b is not None else values.isna().to_numpy(), names=names,
                            top=top, min_posts=min_posts, example_priority=posts["confidence"].to_numpy(dtype=float))
    return _with_examples(drivers, posts)


def period_starts(query: RunQuery, filters: Filters | None, column: str, freq: str = "W") -> list[pd.Timestamp]:
    """The starts of the periods (day, week from Monday, month) in which the filtered posts have dates,
    oldest first."""
    expression = _period_expression(query, column, freq)
    where = query.where(filters)
    frame = query.frame(f"SELECT DISTINCT {expression} AS start FROM rows WHERE {where.sql} AND {expression} IS NOT NULL "
                        "ORDER BY 1", where.params)
    return [pd.Timestamp(t) for t in frame["start"]]


def period_slices(query: RunQuery, filters: Filters | None, column: str, freq: str = "W",
                  period: pd.Timestamp | str | None = None, *, top: int = DEFAULT_TOP,
                  min_posts: int = DEFAULT_MIN_POSTS) -> Drivers:
    """The filtered posts of one period of the dates in ``column`` (default: the latest with posts)
    against the period just before it; the tables are named "<freq> of <start>" (this period first).
    Posts without a readable date take no part."""
    freq = str(freq).upper()
    expression = _period_expression(query, column, freq)
    posts = filtered_posts(query, filters, extra={"period": expression})
    starts = pd.to_datetime(posts["period"])
    if period is None:
        if starts.isna().all():
            raise FilterError(f"no filtered post has a date in {column!r} that reads as one")
        this = starts.max()
    else:
        this = pd.Timestamp(period).normalize()
    before = this - _OFFSETS[freq]
    names = (f"{FREQS[freq]} of {this.date().isoformat()}", f"{FREQS[freq]} of {before.date().isoformat()}")
    drivers = slice_drivers(posts["text"].tolist(), (starts == this).to_numpy(), (starts == before).to_numpy(),
                            names=names, top=top, min_posts=min_posts,
                            example_priority=posts["confidence"].to_numpy(dtype=float))
    return _with_examples(drivers, posts)


def _period_expression(query: RunQuery, column: str, freq: str) -> str:
    if str(freq).upper() not in FREQS:
        raise FilterError(f"freq={freq!r}: use D (day), W (week) or M (month)")
    reading = query.date_reading(column)
    return f"CAST(date_trunc('{FREQS[str(freq).upper()]}', {reading.expression}) AS TIMESTAMP)"


def _value_name(value: str | None) -> str:
    return "(blank)" if value is None else str(value)


def _with_examples(drivers: Drivers, posts: pd.DataFrame) -> Drivers:
    """Each table's example positions turned into the run's row numbers and the posts' texts."""
    rows, texts = posts["row"].to_numpy(), posts["text"].tolist()
    for table in drivers.tables.values():
        table["example_rows"] = [[int(rows[i]) for i in positions] for positions in table["examples"]]
        table["example_texts"] = [[str(texts[i] or "")[:EXAMPLE_CHARS] for i in positions]
                                  for positions in table["examples"]]
    return drivers
