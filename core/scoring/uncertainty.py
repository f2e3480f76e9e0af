"""Which unlabelled pairs are worth a label: the ones the model is least sure of, and the ones whose
text and picture pull apart. Labelling those first is what the correction page gains most from
(``bench/active_labelling.py`` measures it on MVSA)."""
from __future__ import annotations

import numpy as np

# How much a text/image disagreement adds to the fused head's uncertainty. Entropy of three classes
# runs from 0 to ln 3 ≈ 1.1; a disagreement counts about as much as half of that range.
DISAGREEMENT_WEIGHT = 0.5


def labelling_priority(fused: np.ndarray, text: np.ndarray | None = None,
                       image: np.ndarray | None = None) -> np.ndarray:
    """One score per pair, higher = label it first: the entropy of the fused head's (calibrated)
    probabilities ``fused`` (n, 3), plus ``DISAGREEMENT_WEIGHT`` where the text-only and image-only
    heads (``text``, ``image``, each (n, 3) or None) pick different classes. Rows of NaN (a branch the
    pair does not have) count as no disagreement."""
    fused = np.clip(np.asarray(fused, dtype=float), 1e-12, 1.0)
    score = -(fused * np.log(fused)).sum(axis=1)
    if text is not None and image is not None:
        text, image = np.asarray(text, dtype=float), np.asarray(image, dtype=float)
        both = ~(np.isnan(text).any(axis=1) | np.isnan(image).any(axis=1))
        differ = np.zeros(len(score), dtype=bool)
        differ[both] = text[both].argmax(axis=1) != image[both].argmax(axis=1)
        score = score + DISAGREEMENT_WEIGHT * differ
    return score


def most_informative(priority: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest-priority pairs, highest first (ties keep input order)."""
    return np.argsort(-np.asarray(priority, dtype=float), kind="stable")[:max(0, n)]
