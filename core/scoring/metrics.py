"""Evaluation numbers for one or more heads: accuracy, F1, confusion matrix, calibration.

Everything returned is plain Python (int / float / list / dict) so it can go straight
into a JSON model card or a Streamlit table.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score

from core.io.labels import LABELS

_CLASS_INDICES = list(range(len(LABELS)))


def weighted_f1(y_true, y_pred) -> float:
    """F1 per class weighted by its support over the three labels: scikit-learn's
    ``f1_score(average="weighted", zero_division=0)``, in a few numpy lines because training scores
    every head on dev after every epoch, where scikit-learn's input checks cost ~2 ms a call."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n = len(LABELS)
    support = np.bincount(y_true, minlength=n).astype(np.float64)
    predicted = np.bincount(y_pred, minlength=n).astype(np.float64)
    hits = np.bincount(y_true[y_true == y_pred], minlength=n).astype(np.float64)
    denominator = support + predicted  # 2 tp + fp + fn
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return float((f1 * support).sum() / support.sum()) if support.sum() else 0.0


def accuracy_interval(n_correct: int, n: int) -> tuple[float, float]:
    """Wilson score interval (95 %) for an accuracy of ``n_correct`` / ``n``: how far the figure could
    move on another sample of the same size (``core.analysis.stats.wilson_interval``, the project's one
    Wilson interval). Stays inside [0, 1] and is honest for small ``n`` and for accuracies near 0 or 1,
    where the normal approximation is not. No pairs: (0, 1), nothing is known."""
    from core.analysis.stats import wilson_interval

    if n <= 0:
        return 0.0, 1.0
    low, high = wilson_interval(n_correct, n)
    return float(low), float(high)


def _as_arrays(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=int).reshape(-1)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(LABELS):
        raise ValueError(f"probs must have shape (n, {len(LABELS)}), got {probs.shape}")
    if probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"{y_true.shape[0]} labels but {probs.shape[0]} probability rows")
    return y_true, probs


def reliability_bins(y_true, probs, n_bins: int = 10) -> list[dict]:
    """Group predictions by their confidence (max probability) into equal-width bins.

    Each bin reports its mean confidence, the accuracy inside it and how many rows fell in
    it; empty bins have count 0 and None for confidence / accuracy. Bins are (lower, upper],
    the first one also includes 0.
    """
    y_true, probs = _as_arrays(y_true, probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True gives (lower, upper] bins; clip puts confidence 0 into the first bin.
    bin_index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        in_bin = bin_index == b
        count = int(in_bin.sum())
        bins.append({
            "bin_lower": float(edges[b]),
            "bin_upper": float(edges[b + 1]),
            "confidence": float(confidence[in_bin].mean()) if count else None,
            "accuracy": float(correct[in_bin].mean()) if count else None,
            "count": count,
        })
    return bins


def expected_calibration_error(y_true, probs, n_bins: int = 10) -> float:
    """Count-weighted mean gap between confidence and accuracy over the reliability bins."""
    bins = reliability_bins(y_true, probs, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    gap = sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins if b["count"])
    return float(gap / total)


def classification_metrics(y_true, probs) -> dict:
    """Accuracy, weighted / macro F1, per-class scores, confusion matrix and ECE for one head."""
    y_true, probs = _as_arrays(y_true, probs)
    if y_true.size == 0:
        raise ValueError("no rows to evaluate")
    y_pred = probs.argmax(axis=1)
    # labels=[0, 1, 2] keeps every class in the report even when a split lacks one of them.
    report = classification_report(
        y_true, y_pred, labels=_CLASS_INDICES, target_names=list(LABELS),
        output_dict=True, zero_division=0,
    )
    per_class = {
        name: {
            "precision": float(report[name]["precision"]),
            "recall": float(report[name]["recall"]),
            "f1": float(report[name]["f1-score"]),
            "support": int(report[name]["support"]),
        }
        for name in LABELS
    }
    n = int(y_true.shape[0])
    return {
        "n": n,
        "accuracy": float((y_pred == y_true).mean()),
        "accuracy_ci95": list(accuracy_interval(int((y_pred == y_true).sum()), n)),
        "weighted_f1": weighted_f1(y_true, y_pred),
        "macro_f1": float(f1_score(y_true, y_pred, labels=_CLASS_INDICES, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=_CLASS_INDICES).astype(int).tolist(),
        "ece": expected_calibration_error(y_true, probs),
    }


def metrics_for_heads(y_true, probs_by_head: dict) -> dict[str, dict]:
    """classification_metrics for each head ("text", "image", "fused", ...); None heads are skipped."""
    return {
        head: classification_metrics(y_true, probs)
        for head, probs in probs_by_head.items()
        if probs is not None
    }
