"""Class shares with their intervals on a frame of class counts: the step breakdowns and timelines
share (one row per group or period; see ``core.analysis.stats`` for the methods)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.analysis.stats import net_interval, wilson_interval
from core.io.labels import LABELS


def with_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """Shares with Wilson intervals and net sentiment with Newcombe's interval, per row."""
    frame = frame.copy()
    n = frame["n"].to_numpy(dtype=float)
    for c in LABELS:
        k = frame[c].to_numpy(dtype=float)
        low, high = wilson_interval(k, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[f"share_{c}"] = np.where(n > 0, k / n, np.nan)
        frame[f"share_{c}_low"], frame[f"share_{c}_high"] = low, high
    frame["net"], frame["net_low"], frame["net_high"] = net_interval(frame["positive"], frame["negative"], n)
    return frame


def shares_table(frame: pd.DataFrame, first: dict) -> pd.DataFrame:
    """``first`` columns, then posts, each class's share with its interval (percent) and net sentiment
    with its interval (points), from a frame made by ``with_statistics``."""
    table = pd.DataFrame({**first, "posts": frame["n"].astype(int).to_numpy()})
    for c in LABELS:
        for suffix, name in (("", f"{c} %"), ("_low", f"{c} low %"), ("_high", f"{c} high %")):
            table[name] = (frame[f"share_{c}{suffix}"].astype(float) * 100).round(1).to_numpy()
    for suffix, name in (("", "net"), ("_low", "net low"), ("_high", "net high")):
        table[name] = (frame[f"net{suffix}"].astype(float) * 100).round(1).to_numpy()
    return table
