"""Guess which columns of a saved run hold dates and which are worth grouping by, from the rows
themselves (DuckDB over a sample of the Parquet file). The analysis page offers these first; any
column can still be chosen."""
from __future__ import annotations

from core.analysis.dates import cell_text, read_dates
from core.analysis.sql import connect

SAMPLE_ROWS = 20_000
DATE_SHARE = 0.8          # of the non-blank sampled cells must read as dates
MAX_GROUPS = 1000         # more distinct values than this is an identifier or free text, not a group
MAX_GROUP_CHARS = 60      # mean length above this is free text


def guess_roles(parquet_path: str, input_columns: list[str]) -> tuple[list[str], list[str]]:
    """(date columns, group columns) among ``input_columns`` of the Parquet file."""
    con = connect(parquet_path)
    try:
        con.execute(f"CREATE VIEW sample AS SELECT * FROM rows LIMIT {SAMPLE_ROWS}")
        types = dict((name, kind) for name, kind, *_ in con.execute("DESCRIBE rows").fetchall())
        dates, groups = [], []
        for column in input_columns:
            if column not in types:
                continue
            cell = cell_text(column)
            filled, distinct, mean_length = con.execute(
                f"SELECT count({cell}), count(DISTINCT {cell}), avg(length({cell})) FROM sample").fetchone()
            if not filled:
                continue
            reading = read_dates(con, "sample", column, types[column])
            parsed = con.execute(f"SELECT count({reading.expression}) FROM sample").fetchone()[0]
            if parsed >= DATE_SHARE * filled and not types[column].upper().startswith(("BIGINT", "INTEGER", "DOUBLE")):
                dates.append(column)
            elif 2 <= distinct <= min(MAX_GROUPS, max(2, filled // 2)) and (mean_length or 0) <= MAX_GROUP_CHARS:
                groups.append(column)
        return dates, groups
    finally:
        con.close()

