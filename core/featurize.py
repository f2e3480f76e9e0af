"""Turn prepared pairs (core.data.PairRow) into feature matrices through the feature store.

One path for the app, the CLI, training and the benchmark. Image files are read and decoded in
worker threads (Pillow releases the GIL while decoding), so the next chunk's JPEGs are ready while
the encoders run. A row whose image cannot be read or decoded gets a row error; the rest go on.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.features import FeatureStore, content_key, cached_features, text_features
from core.images import decode_image, read_image_bytes


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
                 *, workers: int = 2) -> EncodedPairs:
    """Features for ``rows`` (objects with ``text``, ``image_path``, ``error`` and ``warnings``).
    Rows that already carry an error are skipped and keep it."""
    n = len(rows)
    errors: list[str | None] = [getattr(r, "error", None) for r in rows]
    warnings = [list(getattr(r, "warnings", []) or []) for r in rows]
    text = np.zeros((n, text_encoder.dim), dtype=np.float32)
    image = np.zeros((n, image_encoder.dim), dtype=np.float32)
    has_text = np.array([errors[i] is None and bool(rows[i].text and str(rows[i].text).strip())
                         for i in range(n)], dtype=bool)
    wants_image = [errors[i] is None and rows[i].image_path is not None for i in range(n)]

    text_idx = np.flatnonzero(has_text)
    if len(text_idx):
        texts = [str(rows[i].text) for i in text_idx]
        text[text_idx] = text_features(text_encoder, store, texts)
        for i, cut in zip(text_idx, text_encoder.truncated(texts)):
            if cut:
                warnings[i].append(f"text longer than {text_encoder.max_tokens} tokens: only the start was read")

    image_idx = [i for i in range(n) if wants_image[i]]
    blobs: dict[int, bytes] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in zip(image_idx, pool.map(_safe_read, [rows[i].image_path for i in image_idx])):
            if isinstance(result, bytes):
                blobs[i] = result
            else:
                errors[i] = result
        good = [i for i in image_idx if i in blobs]
        if good:
            keys = [content_key(blobs[i]) for i in good]
            decode_errors: list[str | None] = [None] * len(good)

            def encode_missing(positions: list[int]) -> np.ndarray:
                decoded = list(pool.map(_safe_decode, [blobs[good[p]] for p in positions]))
                ok = [p for p, img in zip(positions, decoded) if not isinstance(img, str)]
                for p, img in zip(positions, decoded):
                    if isinstance(img, str):
                        decode_errors[p] = img
                vectors = np.zeros((len(positions), image_encoder.dim), dtype=np.float32)
                if ok:
                    images = [img for img in decoded if not isinstance(img, str)]
                    where = {p: k for k, p in enumerate(positions)}
                    for vec, p in zip(image_encoder.encode(images), ok):
                        vectors[where[p]] = vec
                return vectors

            image[good] = cached_features(store, image_encoder.id, image_encoder.dim, keys,
                                          encode_missing, decode_errors)
            bad_by_key = {keys[p]: e for p, e in enumerate(decode_errors) if e}
            for p, i in enumerate(good):
                if keys[p] in bad_by_key:
                    errors[i] = bad_by_key[keys[p]]
    has_image = np.array([wants_image[i] and errors[i] is None for i in range(n)], dtype=bool)
    has_text &= np.array([e is None for e in errors], dtype=bool)
    return EncodedPairs(text, image, has_text, has_image, errors, warnings)


def _safe_read(path) -> bytes | str:
    try:
        return _read(path)
    except (OSError, ValueError) as exc:
        return str(exc)


def _safe_decode(blob: bytes):
    try:
        return decode_image(blob)
    except (OSError, ValueError) as exc:
        return str(exc)
