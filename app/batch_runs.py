"""A batch run kept on disk chunk by chunk, so that the Stop button, a closed tab or a server restart
never loses what was scored: the next visit with the same table, images, columns and head finds the
saved chunks and carries on from the next row.

Runs live under ``$MMSA_HOME/batch-runs/<key>/``; the key is a hash of what the scores depend on, so
a run is found again only for the very same job. Each chunk is one Parquet file written atomically
(temporary name, then rename), named by its rows, so a crash mid-write leaves no half chunk behind.
Only the most recent runs are kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from core import config
from core.scoring.batch import empty_result

RUNS_FOLDER = "batch-runs"
KEEP_RUNS = 20  # older runs are removed when a new one starts


def run_key(table_sha256: str, images: object, columns: dict, head_version: str) -> str:
    """The name of a job: the table's bytes, the images chosen, the column choice and the head version."""
    job = json.dumps({"table": table_sha256, "images": images, "columns": columns, "head": head_version},
                     sort_keys=True, default=str)
    return hashlib.sha256(job.encode()).hexdigest()[:24]


class SavedRun:
    """The chunks of one job scored so far (possibly none)."""

    def __init__(self, key: str, total: int):
        self.folder = config.home_dir() / RUNS_FOLDER / key
        self.total = total

    def _chunks(self) -> list[tuple[int, int, Path]]:
        if not self.folder.is_dir():
            return []
        chunks = []
        for path in self.folder.glob("rows-*.parquet"):
            try:
                start, end = (int(part) for part in path.stem.removeprefix("rows-").split("-"))
            except ValueError:
                continue
            chunks.append((start, end, path))
        return sorted(chunks)

    @property
    def completed(self) -> int:
        """Rows [0, completed) are saved, without gaps."""
        done = 0
        for start, end, _ in self._chunks():
            if start != done:
                break
            done = end
        return done

    @property
    def exists(self) -> bool:
        """True when at least one chunk is saved."""
        return self.completed > 0

    @property
    def finished(self) -> bool:
        """True when every row is saved."""
        return self.completed >= self.total

    def frame(self) -> pd.DataFrame:
        """The saved rows in order (an empty scored table when none). A chunk that cannot be read ends the
        run there: the rows after it are scored again on resume."""
        frames, done = [], 0
        for start, end, path in self._chunks():
            if start != done:
                break
            try:
                frames.append(pd.read_parquet(path))
            except Exception:  # noqa: BLE001 - a damaged chunk is a chunk not yet scored
                for later in [p for s, _, p in self._chunks() if s >= start]:
                    later.unlink(missing_ok=True)
                break
            done = end
        return pd.concat(frames, ignore_index=True) if frames else empty_result()

    def append(self, frame: pd.DataFrame) -> None:
        """Save the next scored chunk (rows ``frame.row``) atomically."""
        if frame.empty:
            return
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
            _prune(self.folder.parent)
        start, end = int(frame["row"].iloc[0]), int(frame["row"].iloc[-1]) + 1
        target = self.folder / f"rows-{start:09d}-{end:09d}.parquet"
        temporary = target.with_suffix(".tmp")
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        os.utime(self.folder)

    def discard(self) -> None:
        """Forget the saved chunks (score from the start)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _prune(root: Path) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    cutoff = time.time() - 60  # never a run that was written to a minute ago (another tab may be on it)
    for old in runs[KEEP_RUNS:]:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
