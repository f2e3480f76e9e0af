"""Themes of a saved run: found once over all its scored posts from the text features the feature store
holds (``core.insights.themes``), kept in the run's folder (``themes/auto/`` or ``themes/k<N>/`` for a
chosen number, ``core.insights.theme_store``) and reused; then read for the filtered posts.

The fit is the whole run's, so a theme keeps its id and its name whatever the filters; what follows
the filters is each theme's size, share, sentiment mix and trend, counted by DuckDB over the run's rows
joined to the saved ``row → theme`` table (``theme_view``). With no filter the sizes add up to the
run's scored posts, "no theme" included.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.analysis.engine import RunQuery
from core.analysis.filters import FilterError, Filters
from core.analysis.sql import quote_literal
from core.encoders.base import stored_feature_ids
from core.errors import InputError
from core.features.store import FeatureStore
from core.insights.features import LOOKUP_CHUNK, StoredVectors, text_keys
from core.insights.run_posts import filtered_posts
from core.insights.theme_store import ASSIGNMENT_FILE, load_themes, save_themes
from core.insights.themes import FREQS, ThemeConfig, Themes, find_themes, summarise, theme_trend, themes_json

THEMES_FOLDER = "themes"
MAX_THEMES = 50


class ThemesUnavailable(InputError):
    """The run's themes cannot be found: its text features are not in the feature store (or it does not
    say which text encoder scored it)."""


def themes_folder(run, n_themes: int | None = None) -> Path:
    """Where the themes of ``run`` for this number of themes (None: chosen by silhouette) are kept."""
    return Path(run.folder) / THEMES_FOLDER / ("auto" if n_themes is None else f"k{int(n_themes)}")


def check_n_themes(n_themes: int | None) -> int | None:
    """``n_themes`` when it is None or 1 … MAX_THEMES, else InputError."""
    if n_themes is None:
        return None
    if not 1 <= int(n_themes) <= MAX_THEMES:
        raise InputError(f"number of themes {n_themes}: give 1 to {MAX_THEMES} (or leave it to be chosen)")
    return int(n_themes)


def text_source(run, store: FeatureStore, texts) -> StoredVectors:
    """The stored text vectors of ``texts`` under the encoder that scored ``run``; ThemesUnavailable when
    the run names no text encoder or none of its texts' vectors is in ``store``."""
    encoder = (run.record.encoders.get("text") or {}).get("id")
    if not encoder:
        raise ThemesUnavailable("this run does not record which text encoder scored it: score it again to find "
                                "its themes")
    keys = text_keys(texts)
    ids = list(stored_feature_ids(encoder))  # a run scored under autocast filed its vectors under a suffixed id
    for start in range(0, len(keys), LOOKUP_CHUNK):
        for feature_id in ids:
            found = store.get_many(feature_id, [k for k in keys[start:start + LOOKUP_CHUNK] if k is not None])
            if found:
                return StoredVectors(store, ids, keys, next(iter(found.values())).shape[0])
    raise ThemesUnavailable(f"none of this run's {len(keys):,} posts has its text features in the feature store "
                            "(it was cleared, or the run was scored on another machine): score the run again here "
                            "to store them, then find its themes")


def run_themes(run, store: FeatureStore, *, n_themes: int | None = None, refresh: bool = False,
               threads: int | None = 1) -> Themes:
    """The themes of all of ``run``'s scored posts: the saved ones for this number of themes, or (none
    saved, or ``refresh``) found now from ``store`` and saved with the run. A run folder that cannot be
    written still gives the themes, with a note."""
    n_themes = check_n_themes(n_themes)
    folder = themes_folder(run, n_themes)
    if not refresh:
        saved = load_themes(folder)
        if saved is not None:
            return saved
    with RunQuery.for_run(run) as query:
        posts = filtered_posts(query, None)
    texts = posts["text"].tolist()
    themes = find_themes(text_source(run, store, texts), texts, classes=posts["prediction"].tolist(),
                         config=ThemeConfig(n_themes=n_themes), threads=threads)
    try:
        save_themes(themes, folder, rows=posts["row"].to_numpy())
    except OSError as error:
        themes.notes.append(f"the themes could not be kept with the run ({error}); they are found again next time")
    return themes


@dataclass
class ThemeView:
    """The themes among the filtered posts: ``table`` (``core.insights.themes.summarise``: per theme n,
    share with its interval, sentiment mix with intervals, net), ``trend`` (posts per period and theme,
    None without a date column), ``n`` filtered posts, the run's ``themes`` (the fit) and ``notes``."""
    table: pd.DataFrame
    trend: pd.DataFrame | None
    n: int
    themes: Themes
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> list[dict]:
        """``[{id, terms, n, share}]`` over the filtered posts (the n add up to them)."""
        return themes_json(self.table)


def theme_view(query: RunQuery, filters: Filters | None, themes: Themes, folder: str | Path, *,
               date_column: str | None = None, freq: str = "W") -> ThemeView:
    """``themes`` (saved in ``folder``) among the posts ``filters`` keep; with ``date_column`` also their
    trend per ``freq`` (D, W or M)."""
    freq = str(freq).upper()
    if freq not in FREQS:
        raise FilterError(f"freq={freq!r}: use D (day), W (week) or M (month)")
    where = query.where(filters)
    moment = f", {query.date_reading(date_column).expression} AS moment" if date_column else ""
    assignment = quote_literal(str(Path(folder) / ASSIGNMENT_FILE))  # our own file: a literal is safe here
    frame = query.frame(
        f"WITH f AS (SELECT row, prediction{moment} FROM rows WHERE {where.sql}) "
        f"SELECT f.*, coalesce(a.theme, -1) AS theme FROM f LEFT JOIN read_parquet({assignment}) AS a "
        "ON f.row = a.row ORDER BY f.row", where.params)
    ids = frame["theme"].to_numpy(np.int64)
    terms = {int(r.id): list(r.terms) for r in themes.table.itertuples()} if len(themes.table) else {}
    notes: list[str] = []
    table = summarise(ids, terms, frame["prediction"].tolist())
    trend = theme_trend(ids, frame["moment"], freq, notes) if date_column else None
    return ThemeView(table, trend, len(frame), themes, notes)
