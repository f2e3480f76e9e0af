"""FeatureStore: encoder outputs cached in SQLite, keyed by (encoder id, sha256 of the content).

A text or an image that was encoded once by an encoder is never encoded again, across runs and
across the app, the CLI and the tests. The encoder id carries the weights hash (and a LoRA adapter's
hash), so a changed encoder never reads another encoder's vectors.
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


def content_key(content: str | bytes) -> str:
    """The store key of a text or of image bytes: the sha256 of its content."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


class FeatureStore:
    """Thread-safe SQLite key-value store of float32 vectors. ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
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
            if self.path is not None:
                # WAL lets the app's sessions and a CLI run read while another one writes.
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS features (encoder_id TEXT NOT NULL, key TEXT NOT NULL,"
                       " dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (encoder_id, key))")
            db.execute("SELECT encoder_id, key, dim, vector FROM features LIMIT 1").fetchall()
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
            except sqlite3.DatabaseError as error:  # the file was damaged under a running process
                if self.notice is None:
                    self.notice = (f"the feature store {self.path} cannot be read ({error}); features are "
                                   "computed again (it is moved aside and rebuilt at the next start)")
                    warnings.warn(self.notice)
                return {}
        return found

    def put_many(self, encoder_id: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per key) under ``encoder_id``, replacing earlier ones."""
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [(encoder_id, key, int(vec.shape[0]), vec.tobytes()) for key, vec in zip(keys, vectors)]
        with self._lock:
            if self.notice and self.path is not None:
                return  # writing already failed once: the cache stays as it is, scoring goes on
            try:
                self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)", rows)
                self._db.commit()
            except sqlite3.DatabaseError as error:  # full or read-only disk, a file damaged mid-run
                with contextlib.suppress(sqlite3.Error):
                    self._db.rollback()
                self.notice = (f"the feature store {self.path} cannot be written ({error}); new features are "
                               "not kept, so they will be computed again next time")
                warnings.warn(self.notice)

    def count(self, encoder_id: str | None = None) -> int:
        """How many vectors are stored, for one encoder id or all."""
        with self._lock:
            if encoder_id is None:
                return self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM features WHERE encoder_id = ?",
                                    (encoder_id,)).fetchone()[0]

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
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

