"""A batch run kept on disk chunk by chunk, so that the Stop button, a closed tab or a server restart
never loses what was scored: the next visit with the same table, images, columns and head finds the
saved chunks and carries on from the next row.

Runs live under ``$MMSA_HOME/batch-runs/<key>/``; the key is a hash of what the scores depend on (the
table's bytes, the images' bytes, the columns, the head), so a run is found again only for the very same
job. Each chunk is one Parquet file written atomically (temporary name, then rename), named by its rows,
so a crash mid-write leaves no half chunk behind. A saved chunk is deleted only when it is proven damaged
(its bytes are not a Parquet file, or it holds other columns); any other error reading it is logged and
the chunk kept for the next try. Only the most recent runs are kept.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import config
from core.features.store import content_key
from core.scoring.batch import empty_result, result_columns

log = logging.getLogger(__name__)

RUNS_FOLDER = "batch-runs"
KEEP_RUNS = 20  # older runs are removed when a new one starts


# An upload's sha256 by Streamlit's id of that upload: each upload is hashed once, not on every rerun.
_UPLOAD_HASHES: dict[tuple, str] = {}
_UPLOAD_HASHES_SIZE = 100_000


def upload_signature(kind: str, files: Sequence) -> tuple:
    """What a set of uploaded files is, for the batch page: ``kind`` with each file's name and the sha256 of
    its bytes (the feature store's own key for a picture, ``content_key``). Other pictures under the same
    names and sizes make another signature: their folder is written again and no saved run of the old
    pictures is resumed."""
    return kind, tuple((f.name, _upload_sha256(f)) for f in files)


def _upload_sha256(upload) -> str:
    file_id = getattr(upload, "file_id", None)
    memo = None if file_id is None else (file_id, upload.name, upload.size)
    if memo is not None and memo in _UPLOAD_HASHES:
        return _UPLOAD_HASHES[memo]
    digest = content_key(upload.getvalue())
    if memo is not None:
        if len(_UPLOAD_HASHES) >= _UPLOAD_HASHES_SIZE:
            _UPLOAD_HASHES.clear()
        _UPLOAD_HASHES[memo] = digest
    return digest


def run_key(table_sha256: str, images: object, columns: dict, head_version: str) -> str:
    """The name of a job: the table's bytes, the images chosen (``upload_signature`` of uploads, or a
    server folder), the column choice and the head version."""
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
        """The saved rows in order, up to the first chunk that cannot be read (an empty scored table when
        none): a resume scores again from there. A chunk proven damaged is deleted (``_read_chunk``); one
        that fails for any other reason (a disk that is busy or unreachable, a fault of this program) is
        logged with its traceback and kept, so the next try can read it."""
        frames, done = [], 0
        for start, end, path in self._chunks():
            if start != done:
                break
            try:
                frames.append(_read_chunk(path, end - start))
            except DamagedChunk as damage:
                log.warning("deleting a damaged saved chunk (its rows are scored again): %s", damage)
                path.unlink(missing_ok=True)
                break
            except Exception:  # not proven damaged: keep the file, use the rows before it this time
                log.exception("could not read the saved chunk %s; it is kept for the next try", path)
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


class DamagedChunk(Exception):
    """A saved chunk whose own bytes show it unusable: not a Parquet file, or not the rows it is named for."""


def _read_chunk(path: Path, n_rows: int) -> pd.DataFrame:
    """The rows of one saved chunk. Its bytes are read first (an OSError there is the disk's, not the
    file's, and propagates); then bytes that Parquet refuses (a cut-off footer, garbage) or a table with
    other columns or another row count than the chunk's name says raise DamagedChunk."""
    data = path.read_bytes()
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as error:
        if isinstance(error, MemoryError):  # the machine's state, not the file's
            raise
        raise DamagedChunk(f"{path.name}: {error}") from error
    if table.column_names != result_columns() or table.num_rows != n_rows:
        raise DamagedChunk(f"{path.name}: holds {table.num_rows} rows of columns {table.column_names}, not the "
                           f"{n_rows} scored rows its name says")
    return table.to_pandas()


def _prune(root: Path) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    cutoff = time.time() - 60  # never a run that was written to a minute ago (another tab may be on it)
    for old in runs[KEEP_RUNS:]:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
