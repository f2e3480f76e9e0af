"""Breakdown by any column: posts per group, each class's share with its 95 % interval, and net
sentiment (positive share − negative share) with its 95 % interval (``core.analysis.stats``).

The ``top`` groups with the most posts are kept and the rest are pooled into one "other" group, so a
column with thousands of values still reads; blank cells form their own group. Counting is one
DuckDB query over the filtered posts.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.analysis.engine import RunQuery, class_counts_sql
from core.analysis.filters import FilterError, Filters, value_expression
from core.analysis.shares import shares_table, with_statistics
from core.io.labels import LABELS

OTHER = "(other)"
BLANK = "(blank)"
SORTS = ("net", "posts", "value")
MAX_TOP = 200


@dataclass
class Breakdown:
    """One row per group in ``groups`` (columns: value, label, is_other, values, n, a count and
    share_* / share_*_low / share_*_high per class, net, net_low, net_high); ``distinct`` values in
    the column among the filtered posts; ``n`` the filtered posts."""
    column: str
    top: int
    sort: str
    groups: pd.DataFrame
    distinct: int
    n: int

    def to_dict(self) -> dict:
        """``{column, groups: [{value, n, share: {class: share}, net, net_ci: [low, high]}]}``; the pooled
        group's value is "(other)", a blank group's is None."""
        groups = []
        for g in self.groups.itertuples(index=False):
            groups.append({"value": OTHER if g.is_other else g.value, "n": int(g.n),
                           "share": {c: _number(getattr(g, f"share_{c}")) for c in LABELS},
                           "net": _number(g.net), "net_ci": [_number(g.net_low), _number(g.net_high)]})
        return {"column": self.column, "groups": groups}

    def table(self) -> pd.DataFrame:
        """The groups as people read them: shares and their 95 % interval in percent, net sentiment
        and its interval in points (−100 … +100), numbers rounded to one decimal."""
        return shares_table(self.groups, first={"group": self.groups["label"]})


def breakdown(query: RunQuery, filters: Filters | None, column: str, *, top: int = 10, sort: str = "net") -> Breakdown:
    """The filtered posts of ``query``'s run grouped by ``column`` (see the module docstring).

    ``sort``: "net" (most positive first), "posts" (biggest first) or "value" (alphabetical); the
    pooled "other" group always comes last."""
    if column not in query.columns:
        raise FilterError(f"this run has no column {column!r}")
    if sort not in SORTS:
        raise FilterError(f"sort={sort!r}: use one of {', '.join(SORTS)}")
    top = max(1, min(int(top), MAX_TOP))
    where = query.where(filters)
    counts = ", ".join(f"sum({_q(c)}) AS {_q(c)}" for c in LABELS)
    sql = (
        f"WITH g AS (SELECT {value_expression(column)} AS value, {class_counts_sql()} FROM rows WHERE {where.sql} "
        f"GROUP BY 1), "
        "r AS (SELECT *, row_number() OVER (ORDER BY n DESC, value NULLS LAST) AS k, count(*) OVER () AS distinct_values "
        "FROM g) "
        f"SELECT CASE WHEN k <= ? THEN value END AS value, k > ? AS is_other, count(*) AS \"values\", "
        f"sum(n) AS n, {counts}, max(distinct_values) AS distinct_values FROM r GROUP BY 1, 2")
    frame = query.frame(sql, where.params + [top, top])
    distinct = int(frame["distinct_values"].max()) if len(frame) else 0
    frame = with_statistics(frame.drop(columns="distinct_values"))
    frame["label"] = [OTHER + f" ({v:,} values)" if other else (BLANK if value is None or pd.isna(value) else value)
                      for value, other, v in zip(frame["value"], frame["is_other"], frame["values"])]
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    # The group's name breaks ties, so two groups with the same figures keep one order on every query
    # (DuckDB's GROUP BY returns groups in any order).
    order = {"net": (["net", "n", "label"], [False, False, True]), "posts": (["n", "net", "label"], [False, False, True]),
             "value": (["label"], [True])}[sort]
    frame = frame.sort_values(["is_other", *order[0]], ascending=[True, *order[1]], kind="stable",
                              na_position="last").reset_index(drop=True)
    return Breakdown(column, top, sort, frame, distinct, int(frame["n"].sum()) if len(frame) else 0)


def _q(name: str) -> str:
    return '"' + name + '"'


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)
