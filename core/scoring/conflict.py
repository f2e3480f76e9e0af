"""Do the text and the image tell different stories? A simple, explainable rule.

Rule (applied per pair to the text-only and image-only head probabilities):

* **conflict** — the text head and the image head predict *opposite polarities* (one says
  negative, the other positive), and each of them does so with confidence (its max
  probability) >= ``threshold`` (``CONFLICT_THRESHOLD``, 0.5). Neutral on either side is never a conflict:
  "a neutral caption under an angry photo" is common and not a contradiction.
* **disagree** — the softer signal: the two heads simply have different argmax classes.

How good the rule is can be measured on MVSA-Single, whose rows carry a text label and an
image label: ``text_label != image_label`` marks a real conflict (see
``evaluate_conflict_flag``).
"""
from __future__ import annotations

import numpy as np

from core.io.labels import LABEL_TO_INDEX

# Each head must say its polarity with at least this probability: above the 1/3 of a guess and the
# point where that polarity outweighs the other two classes together. Cards record the value used.
CONFLICT_THRESHOLD = 0.5
_NEGATIVE = LABEL_TO_INDEX["negative"]
_POSITIVE = LABEL_TO_INDEX["positive"]


def _as_probs(probs) -> np.ndarray:
    # A single pair may arrive as shape (3,); treat it as a batch of one.
    return np.atleast_2d(np.asarray(probs, dtype=float))


def disagree(text_probs, image_probs) -> np.ndarray:
    """True where the text head and the image head pick different classes."""
    return _as_probs(text_probs).argmax(axis=1) != _as_probs(image_probs).argmax(axis=1)


def conflict_flags(text_probs, image_probs, threshold: float = CONFLICT_THRESHOLD) -> np.ndarray:
    """True where text and image confidently predict opposite polarities (see module docstring)."""
    text_probs, image_probs = _as_probs(text_probs), _as_probs(image_probs)
    if text_probs.shape != image_probs.shape:
        raise ValueError(f"text probs {text_probs.shape} and image probs {image_probs.shape} differ")
    text_pred, image_pred = text_probs.argmax(axis=1), image_probs.argmax(axis=1)
    opposite = ((text_pred == _NEGATIVE) & (image_pred == _POSITIVE)) | (
        (text_pred == _POSITIVE) & (image_pred == _NEGATIVE)
    )
    confident = (text_probs.max(axis=1) >= threshold) & (image_probs.max(axis=1) >= threshold)
    return opposite & confident


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def evaluate_conflict_flag(flags, real_conflict, fused_correct) -> dict:
    """How well the flag finds real conflicts, and how the fused head fares on flagged pairs.

    precision = flagged pairs that are real conflicts / flagged pairs;
    recall = real conflicts that got flagged / real conflicts. Empty groups give None, not 0,
    so "no data" never reads as "always wrong".
    """
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    real = np.asarray(real_conflict, dtype=bool).reshape(-1)
    fused_correct = np.asarray(fused_correct, dtype=bool).reshape(-1)
    if not (flags.shape == real.shape == fused_correct.shape):
        raise ValueError("flags, real_conflict and fused_correct must have the same length")

    true_positives = int((flags & real).sum())
    n_flagged, n_real = int(flags.sum()), int(real.sum())
    precision = true_positives / n_flagged if n_flagged else None
    recall = true_positives / n_real if n_real else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_flagged": n_flagged,
        "n_real": n_real,
        "fused_accuracy_flagged": _mean_or_none(fused_correct[flags]),
        "fused_accuracy_unflagged": _mean_or_none(fused_correct[~flags]),
    }
