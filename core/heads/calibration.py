"""Temperature scaling: one scalar T that makes a head's probabilities honest.

Fit on a dev set after training: divide the logits by T and pick the T that minimises the
negative log-likelihood. T > 1 softens an overconfident head, T < 1 sharpens a timid one,
and the argmax (so accuracy) never changes.

We search over log T with scipy's bounded scalar minimiser: one parameter, a smooth
convex-in-practice objective, no learning rate to tune and T stays positive by construction.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

# T in [~0.05, ~20]: wide enough for any sane head, narrow enough to stay numerically safe.
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Softmax of logits / T along the last axis (scipy's softmax subtracts the max, so it is stable)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(np.asarray(logits, dtype=float) / temperature, axis=-1)


def _nll(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-log_probs[np.arange(len(y_true)), y_true].mean())


def fit_temperature(logits, y_true) -> float:
    """Return the temperature that minimises the mean NLL of y_true under softmax(logits / T)."""
    logits = np.asarray(logits, dtype=float)
    y_true = np.asarray(y_true, dtype=int).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != y_true.shape[0]:
        raise ValueError(f"logits {logits.shape} do not match {y_true.shape[0]} labels")
    if len(y_true) == 0:
        return 1.0  # nothing to learn from: leave the head as it is
    result = minimize_scalar(
        lambda log_t: _nll(logits, y_true, float(np.exp(log_t))),
        bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
