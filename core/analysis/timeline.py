"""Over time: posts and class shares per day, week (Monday first) or month, read from a column of dates
(``core.analysis.dates``), with 95 % intervals, and the periods whose class mix differs from the
run's level beyond chance marked (chi-square per period, Holm-corrected: ``core.analysis.stats``).

Cells that do not read as dates are counted (blank and unreadable apart, with examples of the
latter) and reported beside the series, never dropped silently. Periods without posts between the
first and the last appear with 0 posts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.analysis.dates import FREQS, DateReading, cell_text
from core.analysis.engine import RunQuery, class_counts_sql
from core.analysis.filters import FilterError, Filters
from core.analysis.shares import shares_table, with_statistics
from core.analysis.stats import unusual_periods
from core.io.labels import LABELS

MAX_PERIODS = 5000
_PANDAS_FREQ = {"D": "D", "W": "W-MON", "M": "MS"}
EXAMPLES = 5


@dataclass
class Timeline:
    """``periods`` has one row per period (start, n, a count and share_* / share_*_low / share_*_high
    per class, net with its interval, p, p_adjusted, tested, unusual, and ``direction``: which classes
    are above or below the level in an unusual period); ``level`` the shares over every dated post."""
    column: str
    freq: str
    reading: DateReading
    periods: pd.DataFrame
    level: dict[str, float | None]
    blank: int
    unreadable: int
    examples: list[str] = field(default_factory=list)

    @property
    def unparsed(self) -> int:
        """Filtered posts with no usable date (blank or unreadable cells)."""
        return self.blank + self.unreadable

    @property
    def n(self) -> int:
        """Filtered posts with a date."""
        return int(self.periods["n"].sum()) if len(self.periods) else 0

    def to_dict(self) -> dict:
        """``{column, freq, unparsed, periods: [{start, n, share: {class: share}, unusual}]}``."""
        periods = [{"start": start.date().isoformat(), "n": int(n),
                    "share": {c: _number(row[f"share_{c}"]) for c in LABELS}, "unusual": bool(unusual)}
                   for (_, row), start, n, unusual in zip(self.periods.iterrows(), self.periods["start"],
                                                          self.periods["n"], self.periods["unusual"])]
        return {"column": self.column, "freq": self.freq, "unparsed": self.unparsed, "periods": periods}

    def table(self) -> pd.DataFrame:
        """The periods as people read them (start date, posts, shares and net with intervals, unusual)."""
        table = shares_table(self.periods, first={"period starting": self.periods["start"].dt.date.to_numpy()})
        table["unusual"] = self.periods["unusual"].to_numpy()
        table["what differs"] = self.periods["direction"].to_numpy()
        table["p (Holm)"] = self.periods["p_adjusted"].round(4).to_numpy()
        return table


def over_time(query: RunQuery, filters: Filters | None, column: str, freq: str = "W") -> Timeline:
    """The filtered posts of ``query``'s run per period of ``column`` (see the module docstring);
    ``freq`` is D, W or M."""
    freq = str(freq).upper()
    if freq not in FREQS:
        raise FilterError(f"freq={freq!r}: use D (day), W (week) or M (month)")
    reading = query.date_reading(column)
    where = query.where(filters)
    sql = (f"WITH f AS (SELECT {reading.expression} AS t, {cell_text(column)} AS raw, prediction FROM rows "
           f"WHERE {where.sql}) "
           f"SELECT date_trunc('{FREQS[freq]}', t) AS start, CASE WHEN t IS NULL THEN raw IS NULL END AS blank, "
           f"{class_counts_sql()} FROM f GROUP BY 1, 2 ORDER BY 1")
    counts = query.frame(sql, where.params)
    dated = counts[counts["start"].notna()].drop(columns="blank")
    blank = int(counts.loc[counts["blank"].eq(True), "n"].sum())
    unreadable = int(counts.loc[counts["blank"].eq(False), "n"].sum())
    examples = []
    if unreadable:
        examples = [v for (v,) in query.con.execute(
            f"WITH f AS (SELECT {reading.expression} AS t, {cell_text(column)} AS raw FROM rows WHERE {where.sql}) "
            f"SELECT raw FROM f WHERE t IS NULL AND raw IS NOT NULL GROUP BY raw ORDER BY count(*) DESC, raw "
            f"LIMIT {EXAMPLES}", where.params).fetchall()]
    periods = _every_period(dated, freq)
    tests = unusual_periods(periods[list(LABELS)].to_numpy(dtype=float))
    periods = with_statistics(periods)
    for key in ("p", "p_adjusted", "tested", "unusual"):
        periods[key] = tests[key]
    periods["direction"] = [_direction(row, flag) for row, flag in zip(tests["residuals"], tests["unusual"])]
    total = periods[list(LABELS)].to_numpy().sum()
    level = {c: (float(periods[c].sum() / total) if total else None) for c in LABELS}
    return Timeline(column, freq, reading, periods, level, blank, unreadable, examples)


def _every_period(dated: pd.DataFrame, freq: str) -> pd.DataFrame:
    """The counted periods plus the empty ones between the first and the last, in order."""
    columns = ["start", "n", *LABELS]
    if dated.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "start" else "int64") for c in columns})
    dated = dated.assign(start=pd.to_datetime(dated["start"]).astype("datetime64[ns]"))
    span = pd.date_range(dated["start"].min(), dated["start"].max(), freq=_PANDAS_FREQ[freq])
    if len(span) > MAX_PERIODS:
        raise FilterError(f"{len(span):,} periods from {span[0].date()} to {span[-1].date()}: choose a longer "
                          "period (week or month) or a date range")
    full = pd.DataFrame({"start": span}).merge(dated, on="start", how="left")
    for c in ["n", *LABELS]:
        full[c] = full[c].fillna(0).astype("int64")
    return full[columns]


def _direction(residuals: np.ndarray, unusual: bool) -> str:
    """In an unusual period, the classes clearly above (↑) or below (↓) the level: |residual| ≥ 2."""
    if not unusual:
        return ""
    parts = [f"{c} {'↑' if r > 0 else '↓'}" for c, r in zip(LABELS, residuals) if abs(r) >= 2]
    return ", ".join(parts)


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)

