"""The statistics behind the analysis views: interval for a share, interval for net sentiment, and the
test that marks a period whose class mix differs from the run's level beyond chance.

- A class share gets the **Wilson score interval** (Wilson 1927): unlike the textbook normal interval
  it never leaves 0–1 and keeps a sensible width at 0 % or 100 % and for small groups.
- Net sentiment (positive share − negative share of the same posts) gets **Newcombe's method 10**
  (Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions
  based on paired data"): each post is one observation of both indicators (positive?, negative?), so
  the two shares are paired; the method combines the two Wilson intervals with the correlation
  between the indicators. Its width reflects the multinomial variance
  (p+ + p− − (p+ − p−)²) / n, and it stays a real interval at the edges (a group whose posts are all
  negative has net −100 % and an interval reaching above −100 %, not a zero-width one).
- A period is *unusual* when Pearson's chi-square test of its class counts against the run's shares
  (classes − 1 degrees of freedom) gives a p-value below 0.05 after **Holm's correction** for the
  number of periods tested (Holm 1979). Periods whose expected count is below 5 in some class are too
  small for the chi-square approximation (Cochran's rule) and are not tested.

Vectorised with numpy. With three classes the test has one or two degrees of freedom, where the
chi-square distribution has a closed form (``chi2_sf``), so no statistics package is needed.
"""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
ALPHA = 0.05
MIN_EXPECTED = 5.0       # Cochran's rule for the chi-square approximation


def wilson_interval(successes, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lower, upper) for ``successes`` out of ``n``, elementwise; NaN where n is 0."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    lower, upper = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    # At 0 or n successes the bound on that side is exactly 0 or 1 (rounding leaves 1e-17 otherwise).
    lower = np.where(k == 0, 0.0, lower)
    upper = np.where(k == n, 1.0, upper)
    return np.where(n > 0, lower, np.nan), np.where(n > 0, upper, np.nan)


def net_interval(positive, negative, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(net, lower, upper): positive share − negative share of the same ``n`` posts with Newcombe's
    method 10 interval for a difference of paired proportions, elementwise; NaN where n is 0."""
    pos, neg, n = (np.asarray(x, dtype=float) for x in (positive, negative, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = pos / n, neg / n
        l1, u1 = wilson_interval(pos, n, z)
        l2, u2 = wilson_interval(neg, n, z)
        # The 2×2 table of (positive?, negative?): no post is both, so a = 0, b = positives,
        # c = negatives, d = the rest; phi is their correlation (0 where a margin is empty).
        a, b, c, d = np.zeros_like(n), pos, neg, n - pos - neg
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        phi = np.where(margins > 0, (a * d - b * c) / np.sqrt(np.where(margins > 0, margins, 1)), 0.0)
        net = p1 - p2
        lower = net - np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
        upper = net + np.sqrt(np.maximum((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0))
    valid = n > 0
    return (np.where(valid, net, np.nan), np.where(valid, np.clip(lower, -1, 1), np.nan),
            np.where(valid, np.clip(upper, -1, 1), np.nan))


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if not len(tested):
        return adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted[order] = np.minimum(running, 1.0)
    return adjusted


def chi2_sf(statistic, dof: int) -> np.ndarray:
    """P(X ≥ statistic) for a chi-square variable with 1 or 2 degrees of freedom (what three classes give):
    erfc(√(x/2)) and exp(−x/2)."""
    x = np.maximum(np.asarray(statistic, dtype=float), 0.0)
    if dof == 1:
        return np.vectorize(lambda v: math.erfc(math.sqrt(v / 2)))(x) if x.ndim else math.erfc(math.sqrt(x / 2))
    if dof == 2:
        return np.exp(-x / 2)
    raise ValueError(f"chi-square with {dof} degrees of freedom: only 1 or 2 (three classes) are needed")


def unusual_periods(counts, alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """Which periods' class counts differ from the overall mix beyond chance.

    ``counts`` is a (periods, classes) array of posts per class. Each period with enough posts is
    tested with Pearson's chi-square against the shares of all periods together; p-values are
    Holm-adjusted over the periods tested. Returns ``p`` (raw), ``p_adjusted``, ``tested`` and
    ``unusual`` (adjusted p < ``alpha``) per period, and ``residuals`` (periods, classes): the
    standardised residual (observed − expected) / √expected, which says which class drove it.
    """
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1)
    overall = counts.sum(axis=0)
    shares = overall / overall.sum() if overall.sum() else np.zeros_like(overall)
    present = shares > 0  # a class no period has adds nothing and no degree of freedom
    expected = totals[:, None] * shares[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        residuals = np.where(expected > 0, (counts - expected) / np.sqrt(expected), 0.0)
    dof = int(present.sum()) - 1
    tested = (totals > 0) & (expected[:, present] >= MIN_EXPECTED).all(axis=1) & (dof >= 1) & (len(counts) > 1)
    statistic = (residuals[:, present] ** 2).sum(axis=1)
    p = np.where(tested, chi2_sf(statistic, max(dof, 1)), np.nan)
    adjusted = holm(p)
    return {"p": p, "p_adjusted": adjusted, "tested": tested,
            "unusual": np.where(tested, adjusted < alpha, False), "residuals": residuals}
