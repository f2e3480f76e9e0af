"""Turn prepared pairs (core.data.PairRow) into feature matrices through the feature store.

One path for the app, the CLI, training and the benchmark. Texts and images are encoded side by
side (the image work in its own thread). Image files are read, hashed, decoded (JPEG in draft mode)
and preprocessed in worker threads (Pillow and numpy release the GIL), one batch ahead of
the image encoder, so the next batch's pixels are ready while the encoder runs, and at most two
batches of pixels are in memory however many rows come in. A row whose image cannot be read or
decoded gets a row error; the rest go on.
"""
from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from core.features import FeatureStore, content_key, cached_features, text_features
from core.images import decode_image, read_image_bytes

IMAGE_BATCH = 16  # images per encoder call (measured in bench/bench_scoring.py; see the README)


@dataclass
class EncodedPairs:
    text: np.ndarray            # (n, text_dim); zeros where a row has no text
    image: np.ndarray           # (n, image_dim); zeros where a row has no image
    has_text: np.ndarray        # bool (n,)
    has_image: np.ndarray       # bool (n,)
    errors: list[str | None] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)


def _read(path) -> bytes:
    return read_image_bytes(path)


def encode_pairs(rows: Sequence, text_encoder, image_encoder, store: FeatureStore,
                 *, workers: int = 2, image_batch: int = IMAGE_BATCH) -> EncodedPairs:
    """Features for ``rows`` (objects with ``text``, ``image_path``, ``error`` and ``warnings``).
    Rows that already carry an error are skipped and keep it.

    The two modalities run side by side: the images (read + hashed in worker threads, looked up in
    the store, the missing ones decoded one batch ahead and encoded) in one thread, the texts (store
    lookup, encoding, the truncation check) in the caller's, so reading, hashing and decoding overlap
    the text encoder."""
    n = len(rows)
    errors: list[str | None] = [getattr(r, "error", None) for r in rows]
    warnings = [list(getattr(r, "warnings", []) or []) for r in rows]
    text = np.zeros((n, text_encoder.dim), dtype=np.float32)
    image = np.zeros((n, image_encoder.dim), dtype=np.float32)
    has_text = np.array([errors[i] is None and bool(rows[i].text and str(rows[i].text).strip())
                         for i in range(n)], dtype=bool)
    wants_image = [errors[i] is None and rows[i].image_path is not None for i in range(n)]
    image_idx = [i for i in range(n) if wants_image[i]]

    with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as side:
        shared = SharedImageWork()
        image_job = side.submit(_image_features, rows, image_idx, image_encoder, store, pool, image_batch,
                                shared) if image_idx else None
        text_idx = np.flatnonzero(has_text)
        if len(text_idx):
            texts = [str(rows[i].text) for i in text_idx]
            text[text_idx] = text_features(text_encoder, store, texts)
            for i, cut in zip(text_idx, text_encoder.truncated(texts)):
                if cut:
                    warnings[i].append(f"text longer than {text_encoder.max_tokens} tokens: only the start was read")
        if image_job is not None:
            shared.help()  # texts done: encode images alongside the image thread until none are left
            vectors, image_errors = image_job.result()
            image[image_idx] = vectors
            for i, error in zip(image_idx, image_errors):
                if error is not None:
                    errors[i] = error
    has_image = np.array([wants_image[i] and errors[i] is None for i in range(n)], dtype=bool)
    has_text &= np.array([e is None for e in errors], dtype=bool)
    return EncodedPairs(text, image, has_text, has_image, errors, warnings)


def _image_features(rows: Sequence, image_idx: list[int], image_encoder, store: FeatureStore,
                    pool: ThreadPoolExecutor, image_batch: int, shared: SharedImageWork | None = None,
                    ) -> tuple[np.ndarray, list[str | None]]:
    """Vectors (zeros where it failed) and errors of the rows ``image_idx``, through the store."""
    try:
        return _image_features_inner(rows, image_idx, image_encoder, store, pool, image_batch, shared)
    finally:
        if shared is not None:
            shared.close()  # nothing (more) to help with


def _image_features_inner(rows, image_idx, image_encoder, store, pool, image_batch, shared):
    vectors = np.zeros((len(image_idx), image_encoder.dim), dtype=np.float32)
    errors: list[str | None] = [None] * len(image_idx)
    paths = [rows[i].image_path for i in image_idx]
    # Files this process hashed before and that have not changed since (same size, mtime, ctime,
    # inode): their key is known without reading them; if the store has it, nothing is read.
    remembered = {p: key for p, key in enumerate(map(_remembered_key, paths)) if key is not None}
    if remembered:
        found = store.get_many(image_encoder.id, list(remembered.values()))
        for p, key in remembered.items():
            if key in found:
                vectors[p] = found[key]
    else:
        found = {}
    todo = [p for p in range(len(paths)) if remembered.get(p) not in found]
    blobs: dict[int, bytes] = {}
    keys: dict[int, str] = {}
    # Read and hashed in the workers (file reads and sha256 release the GIL).
    for p, result in zip(todo, pool.map(_safe_read_key, [paths[p] for p in todo])):
        if isinstance(result, str):
            errors[p] = result
        else:
            blobs[p], keys[p] = result
    good = list(blobs)
    if not good:
        return vectors, errors
    good_keys = [keys[p] for p in good]
    decode_errors: list[str | None] = [None] * len(good)

    def encode_missing(positions: list[int]) -> np.ndarray:
        encoded, failed = encode_image_blobs([blobs[good[q]] for q in positions], image_encoder, pool,
                                             image_batch, shared)
        for q, error in zip(positions, failed):
            decode_errors[q] = error
        return encoded

    vectors[good] = cached_features(store, image_encoder.id, image_encoder.dim, good_keys, encode_missing,
                                    decode_errors)
    bad_by_key = {good_keys[q]: e for q, e in enumerate(decode_errors) if e}
    if bad_by_key:
        for q, p in enumerate(good):
            if good_keys[q] in bad_by_key:
                errors[p] = bad_by_key[good_keys[q]]
    return vectors, errors


# path → (stat signature, sha256 of the bytes) of image files read by this process: scoring the same
# files again skips reading and hashing them. Only a key the store already holds is taken from here;
# anything to encode is read and hashed afresh.
_KEY_MEMO: dict[str, tuple[tuple, str]] = {}
_KEY_MEMO_SIZE = 200_000


def _signature(path) -> tuple | None:
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _remembered_key(path) -> str | None:
    entry = _KEY_MEMO.get(str(path))
    if entry is None:
        return None
    return entry[1] if _signature(path) == entry[0] else None


class SharedImageWork:
    """Lets a second thread join the image encoding: ``encode_image_blobs`` offers its batches here,
    and a thread that has finished its own work (the texts) calls ``help()`` to encode batches too,
    each thread claiming the next one. ``close()`` ends the offer (``help()`` then returns)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._work: Callable[[], None] | None = None
        self._closed = False

    def offer(self, work: Callable[[], None]) -> None:
        with self._cond:
            if not self._closed:
                self._work = work
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed, self._work = True, None
            self._cond.notify_all()

    def help(self) -> None:
        with self._cond:
            while self._work is None and not self._closed:
                self._cond.wait()
            work = self._work
        if work is not None:
            work()


def encode_image_blobs(blobs: Sequence[bytes], image_encoder, pool: ThreadPoolExecutor,
                       batch_size: int = IMAGE_BATCH, shared: SharedImageWork | None = None,
                       ) -> tuple[np.ndarray, list[str | None]]:
    """Vectors for image files' bytes, and per blob the error that kept it out (its row stays zeros).
    Decoding + preprocessing runs in ``pool`` up to two batches ahead of the encoder; with ``shared``,
    a helper thread may encode batches too (the caller's thread always takes part)."""
    vectors = np.zeros((len(blobs), image_encoder.dim), dtype=np.float32)
    errors: list[str | None] = [None] * len(blobs)
    pipelined = hasattr(image_encoder, "preprocess") and hasattr(image_encoder, "encode_pixels")
    prepare = (lambda blob: _safe_prepare(blob, image_encoder)) if pipelined else _safe_decode
    starts = list(range(0, len(blobs), batch_size))
    prepared: dict[int, list[Future]] = {}
    lock = threading.Lock()
    state = {"next": 0, "running": 0, "error": None}
    done = threading.Condition(lock)
    ahead = 2 if shared is not None else 1

    def submit_upto(k: int) -> None:  # under ``lock``
        for j in range(k + 1):
            if j < len(starts) and j not in prepared:
                prepared[j] = [pool.submit(prepare, blob) for blob in blobs[starts[j]:starts[j] + batch_size]]

    def encode_batch(n: int, futures: list[Future]) -> None:
        start = starts[n]
        ok, items = [], []
        for k, future in enumerate(futures):
            result = future.result()
            if isinstance(result, str):
                errors[start + k] = result
            else:
                ok.append(start + k)
                items.append(result)
        if items:
            vectors[ok] = image_encoder.encode_pixels(torch.stack(items)) if pipelined \
                else image_encoder.encode(items)

    def work() -> None:
        while True:
            with lock:
                n = state["next"]
                if n >= len(starts) or state["error"] is not None:
                    return
                state["next"] += 1
                state["running"] += 1
                submit_upto(n + ahead)
                futures = prepared.pop(n)
            try:
                encode_batch(n, futures)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the owner's thread
                with lock:
                    state["error"] = state["error"] or exc
            finally:
                with lock:
                    state["running"] -= 1
                    done.notify_all()

    with lock:
        submit_upto(0)
    if shared is not None and len(starts) > 1:
        shared.offer(work)
    try:
        work()
    finally:
        if shared is not None:
            shared.close()
        with lock:
            while state["running"]:
                done.wait()
    if state["error"] is not None:
        raise state["error"]
    return vectors, errors


def _safe_prepare(blob: bytes, image_encoder):
    try:
        return image_encoder.preprocess(decode_image(blob))
    except (OSError, ValueError) as exc:
        return str(exc)


def _safe_read(path) -> bytes | str:
    try:
        return _read(path)
    except (OSError, ValueError) as exc:
        return str(exc)


def _safe_read_key(path) -> tuple[bytes, str] | str:
    signature = _signature(path)  # before reading: a later change to the file changes it
    blob = _safe_read(path)
    if isinstance(blob, str):
        return blob
    key = content_key(blob)
    if signature is not None:
        if len(_KEY_MEMO) >= _KEY_MEMO_SIZE:
            _KEY_MEMO.clear()
        _KEY_MEMO[str(path)] = (signature, key)
    return blob, key


def _safe_decode(blob: bytes):
    try:
        return decode_image(blob)
    except (OSError, ValueError) as exc:
        return str(exc)
