"""Gallery: the filtered posts that have a picture, one page at a time, with what the model said.

Only the page asked for is read (``LIMIT`` / ``OFFSET`` in DuckDB), so paging through a million posts
costs the same as through a hundred.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.analysis.engine import RunQuery
from core.analysis.filters import FilterError, Filters
from core.analysis.sql import quote_identifier

# How a gallery can be ordered; the row number breaks ties so a page is always the same posts.
ORDERS = {"input": ("in table order", "row"),
          "confident": ("most confident first", "confidence DESC NULLS LAST, row"),
          "unsure": ("least confident first", "confidence ASC NULLS LAST, row")}
MAX_PER_PAGE = 200


@dataclass
class GalleryPage:
    """``posts``: row, id, text, image, image_path (a Path or None), prediction, confidence, conflict
    and label (None without one); ``total`` filtered posts with a picture; pages numbered from 1."""
    posts: pd.DataFrame
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def gallery(query: RunQuery, filters: Filters | None, *, page: int = 1, per_page: int = 24,
            order: str = "input") -> GalleryPage:
    """Page ``page`` of the filtered posts with a picture, ``per_page`` at a time, in ``order``
    (a key of ``ORDERS``). A page past the end gives the last page."""
    if order not in ORDERS:
        raise FilterError(f"order={order!r}: use one of {', '.join(ORDERS)}")
    per_page = max(1, min(int(per_page), MAX_PER_PAGE))
    if query.image_path_column is None:
        return GalleryPage(_empty(), 0, 1, per_page)
    where = query.where(filters)
    picture = quote_identifier(query.image_path_column)
    condition = f"{where.sql} AND {picture} IS NOT NULL"
    total = int(query.one(f"SELECT count(*) FROM rows WHERE {condition}", where.params)[0])
    pages = max(1, -(-total // per_page))
    page = max(1, min(int(page), pages))

    def column(name: str | None, alias: str) -> str:
        return f"{quote_identifier(name)} AS {alias}" if name else f"NULL AS {alias}"

    sql = (f"SELECT row, {column('id' if 'id' in query.columns else None, 'id')}, "
           f"{column(query.text_column, 'text')}, {column(query.image_column, 'image')}, {picture} AS image_path, "
           f"prediction, confidence, conflict, {column(query.label_column, 'label')} FROM rows WHERE {condition} "
           f"ORDER BY {ORDERS[order][1]} LIMIT ? OFFSET ?")
    posts = query.frame(sql, where.params + [per_page, (page - 1) * per_page])
    posts["image_path"] = [query.resolve_image(p) for p in posts["image_path"]]
    return GalleryPage(posts, total, page, per_page)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["row", "id", "text", "image", "image_path", "prediction", "confidence", "conflict",
                                 "label"])

