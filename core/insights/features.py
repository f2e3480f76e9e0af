"""A run's posts' features read back from the feature store, never encoded again.

The store files every vector under (encoder feature key, sha256 of the content): the text itself, or
an image file's bytes. Themes and a second head version only need those vectors, so they read them
here; a post whose vector is not in the store (the store was cleared, the run came from another
machine) is reported as missing, not encoded behind the user's back.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from core.features.store import FeatureStore, content_key
from core.io.images import read_image_bytes

LOOKUP_CHUNK = 5000  # keys per store read: bounds the memory of a lookup on a large run


def has_text(text: object) -> bool:
    """Whether a post has a text the scorer would have encoded (a non-blank string)."""
    return isinstance(text, str) and bool(text.strip())


def text_keys(texts: Sequence) -> list[str | None]:
    """Store keys of texts (None where a post has no text), as the scorer filed them."""
    return [content_key(str(t)) if has_text(t) else None for t in texts]


def _image_key(path) -> str | None:
    try:
        return content_key(read_image_bytes(Path(path)))
    except (OSError, ValueError, TypeError):
        return None


def image_keys(paths: Sequence, workers: int = 2) -> list[str | None]:
    """Store keys of image files (the sha256 of their bytes; None where there is no file or it cannot
    be read). Files are read in ``workers`` threads (reading and hashing release the GIL)."""
    wanted = [i for i, p in enumerate(paths) if p is not None and str(p) not in ("", "nan", "None")]
    keys: list[str | None] = [None] * len(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, key in zip(wanted, pool.map(_image_key, [paths[i] for i in wanted])):
            keys[i] = key
    return keys


def stored_vectors(store: FeatureStore, feature_ids: str | Sequence[str], keys: Sequence[str | None],
                   dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (len(keys), dim) float32, source (len(keys),) int): the index in ``feature_ids`` each
    vector was found under (tried in order), -1 and zeros where a key is None or stored under none of
    them. Read ``LOOKUP_CHUNK`` keys at a time."""
    feature_ids = [feature_ids] if isinstance(feature_ids, str) else list(feature_ids)
    out = np.zeros((len(keys), dim), dtype=np.float32)
    source = np.full(len(keys), -1, dtype=np.int64)
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[start:start + LOOKUP_CHUNK]
        for index, feature_id in enumerate(feature_ids):
            wanted = [k for i, k in enumerate(chunk) if k is not None and source[start + i] < 0]
            if not wanted:
                break
            vectors = store.get_many(feature_id, wanted)
            for offset, key in enumerate(chunk):
                vector = vectors.get(key) if key is not None and source[start + offset] < 0 else None
                if vector is not None and vector.shape[0] == dim:
                    out[start + offset] = vector
                    source[start + offset] = index
    return out, source


class StoredVectors:
    """The vectors of a list of store keys, read on demand: ``rows(positions)`` gives the vectors of
    those posts (zeros where missing). Lets themes stream a large run through the store in chunks
    instead of holding every full-size vector at once."""

    def __init__(self, store: FeatureStore, feature_ids: str | Sequence[str], keys: Sequence[str | None], dim: int):
        self.store, self.feature_ids, self.keys, self.dim = store, feature_ids, list(keys), int(dim)

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, positions: Sequence[int]) -> np.ndarray:
        """Vectors of the posts at ``positions`` (zeros where not stored)."""
        return stored_vectors(self.store, self.feature_ids, [self.keys[i] for i in positions], self.dim)[0]

