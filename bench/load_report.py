"""The load test's figures: per action n, p50, p95 and errors; whether every user saw what they saw alone."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from bench.load_users import Record

SHOWN_PRECISION = 5e-4  # half of the 0.1 % the page shows


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summary(phase: dict) -> list[dict]:
    record = phase["record"]
    return [{"action": action, "n": len(record.times[action]), "p50_s": _pct(record.times[action], 50),
             "p95_s": _pct(record.times[action], 95), "errors": len(record.errors.get(action, []))}
            for action in record.times]


def compare(solo: Record, other: Record, users: list[str]) -> dict:
    """Whether every user saw what they saw alone: explore charts and the correction's figures equal,
    the batch CSV byte for byte (else the largest probability difference)."""
    differ = [u for u in users if u.startswith("explore") and other.seen.get(u) != solo.seen.get(u)]
    gaps = [abs(a - b) for u in users if u.startswith("explore")
            for x, y in zip(solo.seen.get(u, []), other.seen.get(u, []))
            for tx, ty in zip(x["chart"], y["chart"]) for a, b in zip(tx["y"], ty["y"])]
    out = {"explore_equal": not differ, "explore_users_differing": differ,
           "explore_max_prob_diff": max(gaps, default=None),
           # The page shows probabilities to 0.1 %: float32 noise from encoding in other batch
           # sizes or thread interleavings stays far below that.
           "explore_equal_as_shown": all(other.seen.get(u) is not None and len(other.seen[u]) == len(solo.seen.get(u, []))
                                         for u in users if u.startswith("explore")) and max(gaps, default=0) < SHOWN_PRECISION,
           "explore_users_compared": sum(u.startswith("explore") for u in users)}
    if "batch" in solo.seen or "batch" in other.seen:
        a, b = solo.seen.get("batch"), other.seen.get("batch")
        out["batch_csv_identical"] = a is not None and a == b
        if a is not None and b is not None and a != b:
            fa, fb = pd.read_csv(io.BytesIO(a)), pd.read_csv(io.BytesIO(b))
            probs = [c for c in fa.columns if c.startswith("p_")]
            out["batch_same_predictions"] = list(fa["prediction"]) == list(fb["prediction"])
            out["batch_max_prob_diff"] = float(np.nanmax(np.abs(fa[probs].to_numpy() - fb[probs].to_numpy())))
    if "correction" in solo.seen or "correction" in other.seen:
        out["correction_equal"] = solo.seen.get("correction") == other.seen.get("correction")
        out["correction_figures"] = {"alone": solo.seen.get("correction"), "at_once": other.seen.get("correction")}
    return out


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def print_table(title: str, rows: list[dict], solo_rows: list[dict] | None = None) -> None:
    alone = {r["action"]: r for r in solo_rows or []}
    print(f"\n{title}")
    print(f"{'action':32} {'n':>4} {'p50 s':>8} {'p95 s':>8} {'errors':>7}" + ("   alone p50 s" if alone else ""))
    for r in rows:
        line = f"{r['action']:32} {r['n']:>4} {fmt(r['p50_s']):>8} {fmt(r['p95_s']):>8} {r['errors']:>7}"
        if alone:
            line += f"   {fmt(alone.get(r['action'], {}).get('p50_s')):>11}"
        print(line)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
