"""Evaluation numbers: what a perfect, a wrong and a miscalibrated head look like."""
import json

import numpy as np
import pytest

from core.io.labels import LABELS
from core.scoring.metrics import (
    accuracy_interval,
    classification_metrics,
    expected_calibration_error,
    metrics_for_heads,
    reliability_bins,
    weighted_f1,
)


def one_hot(indices):
    return np.eye(len(LABELS))[indices]


def test_perfect_predictions_score_one_with_a_diagonal_confusion_matrix():
    y = np.array([0, 0, 1, 2, 2, 2])
    metrics = classification_metrics(y, one_hot(y))

    assert metrics["n"] == 6
    assert metrics["accuracy"] == 1.0
    assert metrics["weighted_f1"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 3]]
    assert metrics["per_class"]["positive"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    assert metrics["ece"] == 0.0  # confidence 1 and always right


def test_confusion_matrix_rows_are_true_labels_and_columns_predictions():
    # Two negatives, both predicted positive: the count sits in row "negative", column "positive".
    metrics = classification_metrics([0, 0], one_hot([2, 2]))
    assert metrics["confusion_matrix"] == [[0, 0, 2], [0, 0, 0], [0, 0, 0]]
    assert metrics["accuracy"] == 0.0


def test_a_class_missing_from_the_split_is_still_reported_with_zeros():
    metrics = classification_metrics([2, 2, 0], one_hot([2, 2, 0]))
    assert list(metrics["per_class"]) == list(LABELS)
    assert metrics["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert len(metrics["confusion_matrix"]) == 3


def test_metrics_are_plain_python_and_json_serialisable():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50)
    metrics = classification_metrics(rng.integers(0, 3, size=50), probs)
    assert json.loads(json.dumps(metrics)) == metrics  # numpy scalars or arrays would not survive this
    assert type(metrics["accuracy"]) is float and type(metrics["n"]) is int


def test_ece_by_hand():
    # Four rows with confidence 0.9 (bin 0.8-0.9], three right) -> gap |0.9 - 0.75| = 0.15.
    # Two rows with confidence 0.6 (bin 0.5-0.6], both right)    -> gap |0.6 - 1.0| = 0.40.
    # ECE = (4 * 0.15 + 2 * 0.40) / 6 = 1.4 / 6.
    probs = np.array([
        [0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05],
        [0.2, 0.6, 0.2], [0.2, 0.2, 0.6],
    ])
    y = np.array([0, 0, 0, 1, 1, 2])
    assert expected_calibration_error(y, probs) == pytest.approx(1.4 / 6)
    assert classification_metrics(y, probs)["ece"] == pytest.approx(1.4 / 6)


def test_reliability_bins_cover_zero_to_one_and_count_every_row():
    probs = np.array([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    bins = reliability_bins([0, 1, 2, 0], probs, n_bins=10)

    assert len(bins) == 10
    assert bins[0]["bin_lower"] == 0.0 and bins[-1]["bin_upper"] == 1.0
    assert sum(b["count"] for b in bins) == 4
    by_upper = {round(b["bin_upper"], 1): b for b in bins}
    assert by_upper[0.9]["count"] == 1 and by_upper[0.9]["accuracy"] == 1.0  # 0.9 is in (0.8, 0.9]
    assert by_upper[1.0]["count"] == 1
    assert by_upper[0.4]["accuracy"] == 0.0  # predicted negative at 0.34, truth neutral
    empty = by_upper[0.2]
    assert empty["count"] == 0 and empty["confidence"] is None and empty["accuracy"] is None


def test_metrics_for_heads_scores_each_available_head():
    y = np.array([0, 1, 2])
    result = metrics_for_heads(y, {"text": one_hot(y), "image": one_hot([1, 1, 1]), "fused": None})
    assert set(result) == {"text", "image"}
    assert result["text"]["accuracy"] == 1.0
    assert result["image"]["accuracy"] == pytest.approx(1 / 3)


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], np.ones((3, 3)) / 3)
    with pytest.raises(ValueError):
        classification_metrics([0, 1], np.ones((2, 2)) / 2)


def test_weighted_f1_is_scikit_learns_on_any_labels():
    """Training's per-epoch weighted F1 is scikit-learn's, including classes never predicted or absent."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    cases = [(rng.integers(0, 3, 200), rng.integers(0, 3, 200)), (np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])),
             (np.array([1, 1, 1]), np.array([0, 0, 0])), (np.array([2, 2]), np.array([2, 2]))]
    for y_true, y_pred in cases:
        expected = f1_score(y_true, y_pred, labels=[0, 1, 2], average="weighted", zero_division=0)
        assert weighted_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


def test_accuracy_interval_is_wilsons_and_narrows_with_more_pairs():
    """A 95 % interval that stays in [0, 1], contains the observed accuracy, matches the Wilson score
    interval's textbook values, and shrinks as the sample grows."""
    assert accuracy_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert accuracy_interval(45, 60) == pytest.approx((0.6277, 0.8422), abs=1e-4)
    low, high = accuracy_interval(750, 1000)
    assert low < 0.75 < high and high - low < accuracy_interval(45, 60)[1] - accuracy_interval(45, 60)[0]
    metrics = classification_metrics([0, 1, 2, 2], np.eye(3)[[0, 1, 2, 0]])
    assert metrics["accuracy_ci95"] == pytest.approx(list(accuracy_interval(3, 4)))
