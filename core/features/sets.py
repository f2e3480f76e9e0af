"""Labelled feature matrices in memory: what the heads train, correct and are measured on."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureSet:
    """Encoded pairs: ``labels`` is the pair label (index into LABELS); the optional per-modality
    labels (MVSA's text_label / image_label) can supervise the text and image heads."""

    text: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    text_labels: np.ndarray | None = None
    image_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "FeatureSet":
        """The rows ``idx`` (any numpy index) as a new FeatureSet."""
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return FeatureSet(self.text[idx], self.image[idx], self.labels[idx],
                          pick(self.text_labels), pick(self.image_labels))

    def fingerprint(self) -> str:
        """A short sha256 of the text, image and label arrays (recorded in cards)."""
        digest = hashlib.sha256()
        for array in (self.text, self.image, self.labels):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def concat_sets(a: FeatureSet, b: FeatureSet) -> FeatureSet:
    """The rows of ``a`` then ``b`` as one FeatureSet; per-modality labels kept only when both have them."""
    def join(x, y):
        return None if x is None or y is None else np.concatenate([x, y])
    return FeatureSet(np.concatenate([a.text, b.text]), np.concatenate([a.image, b.image]),
                      np.concatenate([a.labels, b.labels]), join(a.text_labels, b.text_labels),
                      join(a.image_labels, b.image_labels))
