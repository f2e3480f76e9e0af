"""Themes kept with a run: ``themes.json`` (the settings, the table, the trend, the notes) and
``themes.parquet`` (``row``, ``theme``: each post's theme, by the run's row number so that DuckDB can
join it to the run's rows), written beside the run's own files.

Both files are written to a temporary name and renamed into place, the assignment first, so a reader
never sees a table without its posts; ``load_themes`` gives None when a folder has no themes yet.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core.insights.themes import ThemeConfig, Themes

THEMES_FILE = "themes.json"
ASSIGNMENT_FILE = "themes.parquet"
FORMAT = 1


def _plain(value):
    """JSON-ready: NaN → null, numpy scalars → Python, arrays and tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _replace(folder: Path, name: str, write) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, folder / name)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_themes(themes: Themes, folder: str | Path, rows=None) -> Path:
    """Write ``themes`` into ``folder`` (created if missing), replacing earlier themes; returns the
    path of ``themes.json``. ``rows``: the run's row number of each post (default 0, 1, 2 …)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(themes.assignment)) if rows is None else np.asarray(rows)
    if len(rows) != len(themes.assignment):
        raise ValueError(f"{len(rows)} row numbers for {len(themes.assignment)} posts")
    assignment = pd.DataFrame({"row": rows.astype(np.int64), "theme": np.asarray(themes.assignment, dtype=np.int64)})
    _replace(folder, ASSIGNMENT_FILE, lambda path: assignment.to_parquet(path, index=False))
    record = {
        "format": FORMAT, "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": themes.config.to_dict(), "k": int(themes.k),
        "silhouette": {str(k): v for k, v in themes.silhouette.items()}, "notes": list(themes.notes),
        "seconds": themes.seconds, "table": _plain(themes.table.to_dict(orient="records")),
        "trend": None if themes.trend is None else _plain(themes.trend.to_dict(orient="records")),
    }
    text = json.dumps(record, ensure_ascii=False, indent=1)
    _replace(folder, THEMES_FILE, lambda path: Path(path).write_text(text, encoding="utf-8"))
    return folder / THEMES_FILE


def load_assignment(folder: str | Path) -> pd.DataFrame:
    """The saved ``row`` → ``theme`` table, in the order the posts were given."""
    return pd.read_parquet(Path(folder) / ASSIGNMENT_FILE)


def load_themes(folder: str | Path) -> Themes | None:
    """The themes saved in ``folder`` (posts in the order given), or None when there are none (or only
    half of them)."""
    folder = Path(folder)
    if not (folder / THEMES_FILE).is_file() or not (folder / ASSIGNMENT_FILE).is_file():
        return None
    record = json.loads((folder / THEMES_FILE).read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        return None  # written by another release of the format: find the themes again
    assignment = load_assignment(folder)["theme"].to_numpy(np.int64)
    table = pd.DataFrame(record["table"]).astype({c: float for c in record["table"][0] if c.startswith(
        ("share", "lo_", "hi_", "net"))}) if record["table"] else pd.DataFrame()
    trend = None if record["trend"] is None else pd.DataFrame(record["trend"], columns=["period", "theme", "n", "share"])
    return Themes(assignment, table, trend, int(record["k"]), {int(k): v for k, v in record["silhouette"].items()},
                  ThemeConfig.from_dict(record["config"]), list(record["notes"]), dict(record["seconds"]))
