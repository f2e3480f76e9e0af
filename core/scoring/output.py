"""What a scored table holds when it leaves the engine (CLI file, download, distributed partitions).

Every column the scorer produces, then every column of the user's table that the scorer did not
produce (``text_label``, notes …) on the row it came from, so a download never loses input.
"""
from __future__ import annotations

import pandas as pd


def with_input_columns(scored: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``scored`` (core.scoring.batch rows, any subset, with the 0-based ``row`` of ``table``) followed by
    each column of ``table`` whose name is not already a scored column."""
    extra = [c for c in table.columns if c not in scored.columns]
    inputs = table.iloc[scored["row"].to_numpy(dtype=int)][extra].reset_index(drop=True)
    return pd.concat([scored.reset_index(drop=True), inputs], axis=1)
