"""A saved run's filtered posts, as drivers, themes and version comparisons read them.

The posts are the analysis page's: its ``Filters`` compiled by ``core.analysis`` (``RunQuery.where``)
into one WHERE clause over the run's Parquet rows, so every view of the page, its address and the
command line keep the same posts. Only the columns these views need are read, in row order.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from core.analysis.engine import RunQuery
from core.analysis.filters import Filters
from core.analysis.sql import quote_identifier
from core.io.labels import LabelError, normalise_label


def filtered_posts(query: RunQuery, filters: Filters | None, *, extra: Mapping[str, str] | None = None,
                   images: bool = False) -> pd.DataFrame:
    """The posts ``filters`` keep, in row order: ``row``, ``id``, ``text``, ``prediction``, ``confidence``,
    ``label`` (None where the run has no such column), with ``images`` also ``image_path`` (a file path or
    None), and one column per ``extra`` item (alias → an SQL expression built by the engine, never user
    text)."""
    where = query.where(filters)

    def column(name: str | None, alias: str) -> str:
        return f"{quote_identifier(name)} AS {alias}" if name else f"NULL AS {alias}"

    items = ["row", column("id" if "id" in query.columns else None, "id"), column(query.text_column, "text"),
             "prediction", "confidence", column(query.label_column, "label")]
    if images:
        items.append(column(query.image_path_column, "image_path"))
    items += [f"{expression} AS {quote_identifier(alias)}" for alias, expression in (extra or {}).items()]
    posts = query.frame(f"SELECT {', '.join(items)} FROM rows WHERE {where.sql} ORDER BY row", where.params)
    if images:
        posts["image_path"] = [query.resolve_image(p) for p in posts["image_path"]]
    return posts


def label_classes(values) -> list[str | None]:
    """Each label as its class name, whatever spelling it came in (None where blank or unreadable)."""
    out: list[str | None] = []
    for value in values:
        try:
            out.append(normalise_label(value))
        except LabelError:
            out.append(None)
    return out
