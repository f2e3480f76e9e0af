"""Turn prepared pairs (core.data.PairRow) into feature matrices through the feature store.

One path for the app, the CLI, training and the benchmark. Image files are read, decoded (JPEG in
draft mode) and preprocessed in worker threads (Pillow and numpy release the GIL), one batch ahead of
the image encoder, so the next batch's pixels are ready while the encoder runs, and at most two
batches of pixels are in memory however many rows come in. A row whose image cannot be read or
decoded gets a row error; the rest go on.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

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
    Rows that already carry an error are skipped and keep it."""
    n = len(rows)
    errors: list[str | None] = [getattr(r, "error", None) for r in rows]
    warnings = [list(getattr(r, "warnings", []) or []) for r in rows]
    text = np.zeros((n, text_encoder.dim), dtype=np.float32)
    image = np.zeros((n, image_encoder.dim), dtype=np.float32)
    has_text = np.array([errors[i] is None and bool(rows[i].text and str(rows[i].text).strip())
                         for i in range(n)], dtype=bool)
    wants_image = [errors[i] is None and rows[i].image_path is not None for i in range(n)]

    image_idx = [i for i in range(n) if wants_image[i]]
    blobs: dict[int, bytes] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # The image files are read while the texts are encoded.
        reads = pool.map(_safe_read, [rows[i].image_path for i in image_idx])
        text_idx = np.flatnonzero(has_text)
        if len(text_idx):
            texts = [str(rows[i].text) for i in text_idx]
            text[text_idx] = text_features(text_encoder, store, texts)
            for i, cut in zip(text_idx, text_encoder.truncated(texts)):
                if cut:
                    warnings[i].append(f"text longer than {text_encoder.max_tokens} tokens: only the start was read")
        for i, result in zip(image_idx, reads):
            if isinstance(result, bytes):
                blobs[i] = result
            else:
                errors[i] = result
        good = [i for i in image_idx if i in blobs]
        if good:
            keys = [content_key(blobs[i]) for i in good]
            decode_errors: list[str | None] = [None] * len(good)

            def encode_missing(positions: list[int]) -> np.ndarray:
                blobs_in_order = [blobs[good[p]] for p in positions]
                vectors, failed = encode_image_blobs(blobs_in_order, image_encoder, pool, image_batch)
                for p, error in zip(positions, failed):
                    decode_errors[p] = error
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


def encode_image_blobs(blobs: Sequence[bytes], image_encoder, pool: ThreadPoolExecutor,
                       batch_size: int = IMAGE_BATCH) -> tuple[np.ndarray, list[str | None]]:
    """Vectors for image files' bytes, and per blob the error that kept it out (its row stays zeros).
    Decoding + preprocessing of batch k+1 runs in ``pool`` while the encoder runs batch k."""
    vectors = np.zeros((len(blobs), image_encoder.dim), dtype=np.float32)
    errors: list[str | None] = [None] * len(blobs)
    pipelined = hasattr(image_encoder, "preprocess") and hasattr(image_encoder, "encode_pixels")
    prepare = (lambda blob: _safe_prepare(blob, image_encoder)) if pipelined else _safe_decode
    starts = list(range(0, len(blobs), batch_size))

    def submit(start: int) -> list[Future]:
        return [pool.submit(prepare, blob) for blob in blobs[start:start + batch_size]]

    pending = submit(starts[0]) if starts else []
    for n, start in enumerate(starts):
        current = pending
        pending = submit(starts[n + 1]) if n + 1 < len(starts) else []
        ok, items = [], []
        for k, future in enumerate(current):
            result = future.result()
            if isinstance(result, str):
                errors[start + k] = result
            else:
                ok.append(start + k)
                items.append(result)
        if not items:
            continue
        if pipelined:
            vectors[ok] = image_encoder.encode_pixels(torch.stack(items))
        else:
            vectors[ok] = image_encoder.encode(items)
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


def _safe_decode(blob: bytes):
    try:
        return decode_image(blob)
    except (OSError, ValueError) as exc:
        return str(exc)
