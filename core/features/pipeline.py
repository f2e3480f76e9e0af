"""Turn prepared pairs (core.io.tables.PairRow) into feature matrices through the feature store.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from core.features.store import FeatureStore, cached_features, content_key, text_features
from core.io.images import decode_image, read_image_bytes

IMAGE_BATCH = 16  # images per encoder call (measured in bench/bench_scoring.py; see the README)


@dataclass
class EncodedPairs:
    """Feature matrices of a batch of pairs, with per-row presence flags, errors and warnings."""
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
        image_job = side.submit(_image_features, rows, image_idx, image_encoder, store, pool,
                                image_batch) if image_idx else None
        text_idx = np.flatnonzero(has_text)
        if len(text_idx):
            texts = [str(rows[i].text) for i in text_idx]
            text[text_idx] = text_features(text_encoder, store, texts)
            for i, cut in zip(text_idx, text_encoder.truncated(texts)):
                if cut:
                    warnings[i].append(f"text longer than {text_encoder.max_tokens} tokens: only the start was read")
        if image_job is not None:
            vectors, image_errors = image_job.result()
            image[image_idx] = vectors
            for i, error in zip(image_idx, image_errors):
                if error is not None:
                    errors[i] = error
    has_image = np.array([wants_image[i] and errors[i] is None for i in range(n)], dtype=bool)
    has_text &= np.array([e is None for e in errors], dtype=bool)
    return EncodedPairs(text, image, has_text, has_image, errors, warnings)


def _image_features(rows: Sequence, image_idx: list[int], image_encoder, store: FeatureStore,
                    pool: ThreadPoolExecutor, image_batch: int) -> tuple[np.ndarray, list[str | None]]:
    """Vectors (zeros where it failed) and errors of the rows ``image_idx``, through the store."""
    vectors = np.zeros((len(image_idx), image_encoder.dim), dtype=np.float32)
    errors: list[str | None] = [None] * len(image_idx)
    paths = [rows[i].image_path for i in image_idx]
    # Files this process hashed before and that have not changed since (same size, mtime, ctime,
    # inode): their key is known without reading them; if the store has it, nothing is read.
    remembered = {p: key for p, key in enumerate(map(_remembered_key, paths)) if key is not None}
    if remembered:
        found = store.get_many(image_encoder.feature_key, list(remembered.values()))
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
                                             image_batch)
        for q, error in zip(positions, failed):
            decode_errors[q] = error
        return encoded

    vectors[good] = cached_features(store, image_encoder.feature_key, image_encoder.dim, good_keys, encode_missing,
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


def encode_image_blobs(blobs: Sequence[bytes], image_encoder, pool: ThreadPoolExecutor,
                       batch_size: int = IMAGE_BATCH) -> tuple[np.ndarray, list[str | None]]:
    """Vectors for image files' bytes, and per blob the error that kept it out (its row stays zeros).
    The next batch is decoded + preprocessed in ``pool`` while the encoder runs on this one, so at
    most two batches of pixels are in memory."""
    vectors = np.zeros((len(blobs), image_encoder.dim), dtype=np.float32)
    errors: list[str | None] = [None] * len(blobs)
    pipelined = hasattr(image_encoder, "preprocess") and hasattr(image_encoder, "encode_pixels")
    prepare = (lambda blob: _safe_prepare(blob, image_encoder)) if pipelined else _safe_decode
    starts = list(range(0, len(blobs), batch_size))

    def submit(n: int) -> list[Future]:
        if n >= len(starts):
            return []
        return [pool.submit(prepare, blob) for blob in blobs[starts[n]:starts[n] + batch_size]]

    upcoming = submit(0)
    for n, start in enumerate(starts):
        futures, upcoming = upcoming, submit(n + 1)
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
    return vectors, errors


def _safe_prepare(blob: bytes, image_encoder):
    try:
        return image_encoder.preprocess(image_encoder.decode(blob))
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
