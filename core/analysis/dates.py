"""Reading a column as dates: ISO 8601, Unix seconds (or milliseconds), and the formats social tools
export, chosen per column from what its cells look like.

``read_dates`` looks at up to ``SAMPLE`` distinct cells of the column, counts how many each family of
formats reads, and builds one SQL expression that turns the column into a UTC ``TIMESTAMP`` (NULL where
a cell does not parse). Day/month order is decided for the whole column: the order that reads more
cells wins (a column with "13/02/2024" is day-first); when no cell tells them apart it is read
month-first and the reading says so. Cells that do not parse are counted by the views, never dropped
silently. Times with an offset are converted to UTC; times without one are taken as UTC.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from core.analysis.sql import quote_identifier

SAMPLE = 5000
FREQS = {"D": "day", "W": "week", "M": "month"}

# Families of formats, tried in this order on each cell (a COALESCE: the first that reads it wins).
# Only the families that read at least one sampled cell make it into a column's expression.
_STRPTIME = {
    "Twitter API (Wed Oct 10 20:19:24 +0000 2018)": ["%a %b %d %H:%M:%S %z %Y"],
    "RFC 2822 (Tue, 05 Mar 2024 10:00:00 +0000)": ["%a, %d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M:%S %z"],
    "year/month/day": ["%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d"],
    "day/month/year": ["%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
                       "%d.%m.%Y", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y %H:%M", "%d-%m-%Y", "%d/%m/%y"],
    "month/day/year": ["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
                       "%m/%d/%Y", "%m-%d-%Y", "%m/%d/%y %I:%M %p", "%m/%d/%y %H:%M", "%m/%d/%y"],
    "month names (5 Mar 2024, March 5, 2024)": [
        "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%B %d %Y", "%d-%b-%Y", "%d %b %Y %H:%M",
        "%d %B %Y %H:%M", "%b %d, %Y %I:%M %p", "%B %d, %Y %I:%M %p", "%b %d, %Y %H:%M", "%B %d, %Y at %I:%M %p"],
}
DAY_FIRST, MONTH_FIRST = "day/month/year", "month/day/year"
QUICK = ("ISO 8601", "Unix seconds", "Unix milliseconds")


@dataclass(frozen=True)
class DateReading:
    """How a column is read as dates: ``expression`` is SQL over the column giving a UTC TIMESTAMP or
    NULL; ``formats`` names the families it reads, for people; ``note`` says what was assumed."""
    column: str
    expression: str
    formats: tuple[str, ...]
    note: str | None = None


def cell_text(column: str) -> str:
    """SQL: the column's cell as trimmed text, NULL where blank."""
    return f"NULLIF(trim(CAST({quote_identifier(column)} AS VARCHAR)), '')"


def _families(v: str) -> dict[str, str]:
    """Family name → SQL reading the text ``v`` as TIMESTAMP (NULL where it does not)."""
    families = {
        "ISO 8601": f"CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP)",
        "Unix seconds": f"CASE WHEN regexp_full_match({v}, '-?[0-9]{{9,10}}([.][0-9]+)?') "
                        f"THEN CAST(to_timestamp(CAST({v} AS DOUBLE)) AS TIMESTAMP) END",
        "Unix milliseconds": f"CASE WHEN regexp_full_match({v}, '[0-9]{{12,13}}') "
                             f"THEN CAST(to_timestamp(CAST({v} AS DOUBLE) / 1000) AS TIMESTAMP) END",
    }
    for name, formats in _STRPTIME.items():
        listed = ", ".join("'" + f + "'" for f in formats)  # our own constants, never user text
        families[name] = f"CAST(try_strptime({v}, [{listed}]) AS TIMESTAMP)"
    return families


def read_dates(con, source: str, column: str, column_type: str) -> DateReading:
    """How to read ``column`` of the relation ``source`` (a view name) as dates; ``column_type`` is its
    DuckDB type. Typed date / timestamp columns are used as they are, numbers as Unix seconds
    (milliseconds from 10^11 up), text by sampling (see the module docstring)."""
    name = quote_identifier(column)
    kind = column_type.upper()
    if kind.startswith(("TIMESTAMP", "DATE")):
        return DateReading(column, f"CAST({name} AS TIMESTAMP)", ("date/time values",))
    if kind in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE") or kind.startswith("DECIMAL"):
        expression = (f"CAST(to_timestamp(CASE WHEN abs({name}) >= 1e11 THEN {name} / 1000 ELSE {name} END) "
                      "AS TIMESTAMP)")
        return DateReading(column, expression, ("Unix seconds",))
    families = _families("v")
    sample = (f"WITH s AS (SELECT DISTINCT {cell_text(column)} AS v FROM {source} "
              f"WHERE {cell_text(column)} IS NOT NULL LIMIT {SAMPLE}) ")
    # The machine formats first: when they read every sampled cell (the usual export), the slower
    # families of written-out dates are not tried at all.
    quick = [name for name in families if name in QUICK]
    found = con.execute(sample + "SELECT count(*), "
                        + ", ".join(f"count({families[name]})" for name in quick) + " FROM s").fetchone()
    counts = dict.fromkeys(families, 0) | dict(zip(quick, found[1:]))
    readable = f"count(COALESCE({', '.join(families[name] for name in quick)}))"
    if con.execute(sample + f"SELECT {readable} FROM s").fetchone()[0] < found[0]:
        rest = [name for name in families if name not in QUICK]
        counts |= dict(zip(rest, con.execute(
            sample + "SELECT " + ", ".join(f"count({families[name]})" for name in rest) + " FROM s").fetchone()))
    counts = [counts[name] for name in families]
    parsed = dict(zip(families, counts))
    note = None
    if parsed[DAY_FIRST] and parsed[DAY_FIRST] == parsed[MONTH_FIRST]:
        note = "no day above 12 tells day and month apart: read as month/day/year"
    drop = MONTH_FIRST if parsed[DAY_FIRST] > parsed[MONTH_FIRST] else DAY_FIRST
    used = [family for family, n in parsed.items() if n and family != drop]
    if not used:
        return DateReading(column, "CAST(NULL AS TIMESTAMP)", (), "no cell reads as a date")
    on_cell = _families(cell_text(column))
    expression = "COALESCE(" + ", ".join(on_cell[family] for family in used) + ")" if len(used) > 1 \
        else on_cell[used[0]]
    return DateReading(column, expression, tuple(used), note)


@functools.lru_cache(maxsize=256)
def cached_reading(path: str, mtime_ns: int, column: str, column_type: str) -> DateReading:
    """``read_dates`` of one Parquet file's column, once per process while the file is unchanged."""
    from core.analysis.sql import connect

    con = connect(path)
    try:
        return read_dates(con, "rows", column, column_type)
    finally:
        con.close()
