"""FeatureStore: encoder outputs cached in SQLite, keyed by (encoder id, sha256 of the content).

A text or an image that was encoded once by an encoder is never encoded again, across runs and
across the app, the CLI and the tests (while it stays in the store). The encoder id carries the weights
hash (and a LoRA adapter's hash), so a changed encoder never reads another encoder's vectors.

The store has a size bound (``MMSA_FEATURE_STORE_MAX_BYTES``, 2 GiB by default): past it, the least
recently used vectors are dropped until it is back at 90 % of the bound, and the file shrinks (SQLite's
incremental vacuum). Recency costs no write per read: the keys read are noted in memory and stamped in
one batch, at the next write or every ``TOUCH_BATCH`` keys.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core import config

TOUCH_BATCH = 2_000   # keys read before their last-use stamps are written, at the latest
EVICT_TO = 0.9        # past the bound, drop the least recently used vectors down to this share of it


def content_key(content: str | bytes) -> str:
    """The store key of a text or of image bytes: the sha256 of its content."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


class FeatureStore:
    """Thread-safe SQLite key-value store of float32 vectors. ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None = None, max_bytes: int | None = None):
        self.path = Path(path) if path is not None else None
        # The bound in bytes (0: none); unset, the MMSA_FEATURE_STORE_MAX_BYTES setting.
        self.max_bytes = config.feature_store_max_bytes() if max_bytes is None else int(max_bytes)
        self._touched: dict[tuple[str, str], None] = {}  # (encoder id, key) read since the last stamp
        self._lock = threading.Lock()
        self.moved_aside: Path | None = None  # where a damaged store file went, when one was found
        self.notice: str | None = None        # why features are not being kept on disk, when they are not
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except (sqlite3.OperationalError, OSError) as error:
            # The store is only a cache: a folder that cannot be written (read-only, full, missing
            # permissions) means features are computed every time, never that scoring stops.
            self._keep_in_memory(f"the feature store {self.path} cannot be opened ({error})")
        except sqlite3.DatabaseError as error:
            if self.path is None:
                raise
            # A damaged file (a crash on a bad disk, a stray overwrite) is kept for inspection under
            # another name and the store starts again empty.
            try:
                self.moved_aside = self._move_aside()
                self._db = self._open()
            except (sqlite3.DatabaseError, OSError) as second:
                self._keep_in_memory(f"the feature store {self.path} is damaged ({error}) and could not be "
                                     f"replaced ({second})")
            else:
                warnings.warn(f"the feature store {self.path} was damaged ({error}); it was moved to "
                              f"{self.moved_aside} and a new one was started (features are computed again)")

    def _keep_in_memory(self, reason: str) -> None:
        self.notice = f"{reason}; features are kept in memory for this run only"
        warnings.warn(self.notice)
        self.path = None
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False, timeout=30)
        try:
            # Freed pages go back to the file system on demand (incremental vacuum); this only takes on a
            # new file, before WAL and the first table. An older file is converted at its first eviction.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if self.path is not None:
                # WAL lets the app's sessions and a CLI run read while another one writes.
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS features (encoder_id TEXT NOT NULL, key TEXT NOT NULL,"
                       " dim INTEGER NOT NULL, vector BLOB NOT NULL, last_used REAL NOT NULL DEFAULT 0,"
                       " PRIMARY KEY (encoder_id, key))")
            columns = {row[1] for row in db.execute("PRAGMA table_info(features)")}
            if "last_used" not in columns:  # a store written before the size bound: all equally old
                db.execute("ALTER TABLE features ADD COLUMN last_used REAL NOT NULL DEFAULT 0")
            db.execute("CREATE INDEX IF NOT EXISTS features_by_use ON features (last_used)")
            db.execute("SELECT encoder_id, key, dim, vector, last_used FROM features LIMIT 1").fetchall()
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                os.replace(part, Path(f"{target}{suffix}"))
        return target

    def get_many(self, encoder_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of ``keys`` under ``encoder_id``: a dict key → vector of those found."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            try:
                for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
                    chunk = unique[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT key, vector FROM features WHERE encoder_id = ? AND key IN ({marks})",
                        [encoder_id, *chunk]).fetchall()
                    for key, blob in rows:
                        found[key] = np.frombuffer(blob, dtype=np.float32)
                        self._touched[(encoder_id, key)] = None
            except sqlite3.DatabaseError as error:  # the file was damaged under a running process
                if self.notice is None:
                    self.notice = (f"the feature store {self.path} cannot be read ({error}); features are "
                                   "computed again (it is moved aside and rebuilt at the next start)")
                    warnings.warn(self.notice)
                return {}
            if len(self._touched) >= TOUCH_BATCH:
                self._write(self._stamp_touched)
        return found

    def put_many(self, encoder_id: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per key) under ``encoder_id``, replacing earlier ones; then keep the
        store within its size bound."""
        vectors = np.asarray(vectors, dtype=np.float32)
        now = time.time()
        rows = [(encoder_id, key, int(vec.shape[0]), vec.tobytes(), now) for key, vec in zip(keys, vectors)]

        def insert() -> None:
            self._stamp_touched()
            self._db.executemany("INSERT OR REPLACE INTO features (encoder_id, key, dim, vector, last_used) "
                                 "VALUES (?, ?, ?, ?, ?)", rows)

        with self._lock:
            if self._write(insert):
                self._write(self._evict_if_over)

    def _write(self, step: Callable[[], None]) -> bool:
        """Run ``step`` as one transaction; a failure stops the caching (with one warning), never the caller."""
        if self.notice and self.path is not None:
            return False  # writing already failed once: the cache stays as it is, scoring goes on
        try:
            step()
            self._db.commit()
        except sqlite3.DatabaseError as error:  # full or read-only disk, a file damaged mid-run
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
            self.notice = (f"the feature store {self.path} cannot be written ({error}); new features are "
                           "not kept, so they will be computed again next time")
            warnings.warn(self.notice)
            return False
        return True

    def _stamp_touched(self) -> None:
        if self._touched:
            now = time.time()
            self._db.executemany("UPDATE features SET last_used = ? WHERE encoder_id = ? AND key = ?",
                                 [(now, encoder_id, key) for encoder_id, key in self._touched])
            self._touched.clear()

    def _used_bytes(self) -> int:
        pages, free, size = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def _evict_if_over(self) -> None:
        if not self.max_bytes or self._used_bytes() <= self.max_bytes:
            return
        target = int(self.max_bytes * EVICT_TO)
        for _ in range(20):  # each round drops about what is over, by the average row's size
            used, rows = self._used_bytes(), self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
            if used <= target or rows == 0:
                break
            drop = max(1, -(-(used - target) * rows // used))
            self._db.execute("DELETE FROM features WHERE rowid IN (SELECT rowid FROM features "
                             "ORDER BY last_used, rowid LIMIT ?)", (drop,))
        self._db.commit()
        self._shrink()

    def _shrink(self) -> None:
        """Hand the freed pages back to the file system, so the file itself gets smaller."""
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # A store made before the bound: switch it to incremental vacuum, once (a full rewrite).
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._db.execute("VACUUM")
        # Through executescript: a plain execute steps the pragma once, which frees a single page.
        self._db.executescript("PRAGMA incremental_vacuum;")
        if self.path is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (the database and its write-ahead log), or in memory."""
        if self.path is None:
            with self._lock:
                return self._used_bytes()
        return sum(Path(f"{self.path}{suffix}").stat().st_size for suffix in ("", "-wal")
                   if Path(f"{self.path}{suffix}").exists())

    def count(self, encoder_id: str | None = None) -> int:
        """How many vectors are stored, for one encoder id or all."""
        with self._lock:
            if encoder_id is None:
                return self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM features WHERE encoder_id = ?",
                                    (encoder_id,)).fetchone()[0]

    def close(self) -> None:
        """Write the pending last-use stamps and close the database connection."""
        with self._lock:
            if self._touched:
                self._write(self._stamp_touched)
            self._db.close()


def cached_features(store: FeatureStore, encoder_id: str, dim: int, keys: Sequence[str],
                    encode_missing: Callable[[list[int]], np.ndarray],
                    errors: list[str | None] | None = None) -> np.ndarray:
    """Vectors for ``keys`` in order. Only the positions whose key is not stored yet are passed to
    ``encode_missing`` (each distinct key once); their vectors are stored before returning, except
    those of positions that ``encode_missing`` marked as failed in ``errors``."""
    out = np.zeros((len(keys), dim), dtype=np.float32)
    found = store.get_many(encoder_id, keys)
    first_position: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in found:
            out[i] = found[key]
        elif key not in first_position:
            first_position[key] = i
    if first_position:
        positions = list(first_position.values())
        vectors = np.asarray(encode_missing(positions), dtype=np.float32)
        keep = [n for n, i in enumerate(positions) if errors is None or errors[i] is None]
        store.put_many(encoder_id, [keys[positions[n]] for n in keep], vectors[keep])
        fresh = dict(zip(first_position, vectors))
        for i, key in enumerate(keys):
            if key in fresh:
                out[i] = fresh[key]
    return out


def text_features(encoder, store: FeatureStore, texts: Sequence[str]) -> np.ndarray:
    """Text vectors through the store: identical texts are encoded once, ever."""
    keys = [content_key(t) for t in texts]
    return cached_features(store, encoder.feature_key, encoder.dim, keys,
                           lambda positions: encoder.encode([texts[i] for i in positions]))

