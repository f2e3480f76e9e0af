"""Temperature scaling: leaves honest logits alone, cools down overconfident ones."""
import numpy as np
import pytest

from core.heads.calibration import apply_temperature, fit_temperature
from core.scoring.metrics import expected_calibration_error


def nll(probs, y):
    return float(-np.log(probs[np.arange(len(y)), y]).mean())


def sample_calibrated(n=4000, seed=0):
    """Logits whose softmax is, by construction, the true label distribution."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 3))
    probs = apply_temperature(logits, 1.0)
    y = np.array([rng.choice(3, p=p) for p in probs])
    return logits, y


def test_apply_temperature_is_a_stable_softmax():
    probs = apply_temperature(np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]), 1.0)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3)


def test_higher_temperature_softens_without_changing_the_prediction():
    logits = np.array([[2.0, 0.5, -1.0]])
    sharp, soft = apply_temperature(logits, 1.0), apply_temperature(logits, 3.0)
    assert soft.max() < sharp.max()
    assert soft.argmax() == sharp.argmax()


def test_calibrated_logits_get_a_temperature_near_one():
    logits, y = sample_calibrated()
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_overconfident_logits_get_t_above_one_and_better_nll_and_ece():
    logits, y = sample_calibrated(seed=1)
    overconfident = logits * 3.0  # same ranking, three times too sure

    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.15)

    before, after = apply_temperature(overconfident, 1.0), apply_temperature(overconfident, temperature)
    assert nll(after, y) < nll(before, y)
    assert expected_calibration_error(y, after) < expected_calibration_error(y, before)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))  # accuracy unchanged


def test_underconfident_logits_get_t_below_one():
    logits, y = sample_calibrated(seed=2)
    assert fit_temperature(logits / 2.0, y) < 1.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        apply_temperature(np.zeros((1, 3)), 0.0)
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((2, 3)), np.array([0, 1, 2]))
