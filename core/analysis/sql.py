"""The few SQL helpers every analysis query shares: a DuckDB connection over a run's Parquet file and
quoting of identifiers (column names are the user's data: they are quoted, never trusted; values
always travel as parameters)."""
from __future__ import annotations

import duckdb

# DuckDB's own default is every core; a bound keeps one heavy query from starving the app's other users.
THREADS = 2
MEMORY_LIMIT = "1GB"


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier: in double quotes, inner double quotes doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal (only for our own file paths: user values go as parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def connect(parquet_path: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the view ``rows`` over ``parquet_path``, in UTC."""
    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT})
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet({quote_literal(parquet_path)})")
    return con
