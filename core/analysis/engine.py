"""A run's scored posts as a DuckDB view, and the small queries every view shares.

``RunQuery`` opens a connection over the run's ``rows.parquet`` (nothing is loaded: DuckDB reads only
the columns and row groups a query needs, so a run bigger than memory still opens), knows which
columns hold the text, the label and the picture path, reads date columns (``core.analysis.dates``)
and compiles ``Filters`` to one WHERE clause. The views (breakdown, timeline, gallery) are functions
over a ``RunQuery`` and a ``Filters``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from core.analysis.dates import DateReading, cached_reading
from core.analysis.filters import FilterError, Filters, Where, compile_filters, terms_condition, value_expression
from core.analysis.search import parse_search
from core.analysis.sql import connect, quote_identifier, quote_literal
from core.analysis.stats import wilson_interval
from core.io.labels import LABELS


def class_counts_sql(column: str = "prediction") -> str:
    """SQL select-list items: ``n`` and one count per class (``negative``, ``neutral``, ``positive``)."""
    return "count(*) AS n, " + ", ".join(
        f"count(*) FILTER (WHERE {column} = {quote_literal(label)}) AS {quote_identifier(label)}" for label in LABELS)


@dataclass
class Summary:
    """The filtered posts: how many, per predicted class, and each class share with its 95 % interval."""
    n: int
    counts: dict[str, int]
    shares: dict[str, float | None]
    intervals: dict[str, tuple[float, float] | None]


class RunQuery:
    """Queries over one run's Parquet rows. Use as a context manager (or call ``close``).

    ``folder`` is where relative picture paths start (the run's folder); the column arguments name
    the run's text, label and picture-path columns (None when it has none)."""

    def __init__(self, parquet_path: str | Path, *, folder: str | Path | None = None, text_column: str | None = "text",
                 label_column: str | None = "label", image_path_column: str | None = None, image_column: str | None = "image"):
        self.path = Path(parquet_path)
        self.folder = Path(folder) if folder is not None else self.path.parent
        self.con = connect(str(self.path))
        self.columns: dict[str, str] = dict(
            (name, kind) for name, kind, *_ in self.con.execute("DESCRIBE rows").fetchall())
        self.text_column = text_column if text_column in self.columns else None
        self.label_column = label_column if label_column in self.columns else None
        self.image_path_column = image_path_column if image_path_column in self.columns else None
        self.image_column = image_column if image_column in self.columns else None
        self._mtime_ns = self.path.stat().st_mtime_ns

    @classmethod
    def for_run(cls, run) -> RunQuery:
        """A query over a saved run (``core.runs.Run``), its roles taken from the run's record."""
        roles = run.record.roles
        return cls(run.rows_path, folder=run.folder, text_column=roles.text, label_column=roles.label,
                   image_path_column=roles.image_path, image_column=roles.image)

    def __enter__(self) -> RunQuery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # ----- building blocks -----------------------------------------------------------------------
    def date_reading(self, column: str) -> DateReading:
        """How ``column`` reads as dates (worked out once per process and file)."""
        if column not in self.columns:
            raise FilterError(f"this run has no column {column!r}")
        return cached_reading(str(self.path), self._mtime_ns, column, self.columns[column])

    def where(self, filters: Filters | None) -> Where:
        """``filters`` compiled for this run."""
        return compile_filters(filters or Filters(), self)

    def frame(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """The result of ``sql`` (parameters bound) as a DataFrame."""
        return self.con.execute(sql, params or []).df()

    def one(self, sql: str, params: list | None = None) -> tuple:
        """The first row of ``sql``'s result."""
        return self.con.execute(sql, params or []).fetchone()

    # ----- shared answers --------------------------------------------------------------------------
    @property
    def total_rows(self) -> int:
        """Every row of the run, scored or not."""
        return int(self.one("SELECT count(*) FROM rows")[0])

    def count(self, filters: Filters | None = None) -> int:
        """Posts left after ``filters`` (scored posts only)."""
        where = self.where(filters)
        return int(self.one(f"SELECT count(*) FROM rows WHERE {where.sql}", where.params)[0])

    def summary(self, filters: Filters | None = None) -> Summary:
        """The filtered posts' class counts and shares with Wilson 95 % intervals."""
        where = self.where(filters)
        row = self.one(f"SELECT {class_counts_sql()} FROM rows WHERE {where.sql}", where.params)
        n, counts = int(row[0]), dict(zip(LABELS, (int(x) for x in row[1:])))
        low, high = wilson_interval([counts[c] for c in LABELS], [n] * len(LABELS))
        return Summary(n, counts, {c: (counts[c] / n if n else None) for c in LABELS},
                       {c: (None if n == 0 else (float(lo), float(hi))) for c, lo, hi in zip(LABELS, low, high)})

    def search_counts(self, filters: Filters) -> dict[str, int]:
        """For a search: posts matching each term on its own and all of them together, among the posts
        the other filters keep (``{term as typed: posts, ..., "all terms": posts}``)."""
        terms = parse_search(filters.search)
        if not terms:
            return {}
        base = self.where(replace(filters, search=""))
        conditions = [terms_condition([term], self) for term in terms] + [terms_condition(terms, self)]
        items = ", ".join(f"count(*) FILTER (WHERE {c.sql})" for c in conditions)
        row = self.one(f"SELECT {items} FROM rows WHERE {base.sql}",
                       [p for c in conditions for p in c.params] + base.params)
        result = {term.label: int(n) for term, n in zip(terms, row[:-1])}
        result["all terms"] = int(row[-1])
        return result

    def column_values(self, column: str, limit: int = 200) -> pd.DataFrame:
        """The most frequent values of ``column`` over the scored posts (``value``, ``n``; blank = None)."""
        if column not in self.columns:
            raise FilterError(f"this run has no column {column!r}")
        value = value_expression(column)
        return self.frame(f"SELECT {value} AS value, count(*) AS n FROM rows WHERE prediction IS NOT NULL "
                          f"GROUP BY 1 ORDER BY n DESC, value NULLS LAST LIMIT ?", [int(limit)])

    def distinct_count(self, column: str) -> int:
        """How many distinct non-blank values ``column`` holds (approximate above a few thousand)."""
        if column not in self.columns:
            raise FilterError(f"this run has no column {column!r}")
        return int(self.one(f"SELECT approx_count_distinct({value_expression(column)}) FROM rows")[0])

    def resolve_image(self, stored: str | None) -> Path | None:
        """A stored picture path as a file path (relative ones start at the run's folder)."""
        if not stored:
            return None
        path = Path(stored)
        return path if path.is_absolute() else self.folder / path
