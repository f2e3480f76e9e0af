"""The 95 % interval of a share, for theme mixes and accuracies."""
from __future__ import annotations

import math

from scipy.stats import binomtest


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of the share k / n ((nan, nan) when n is 0)."""
    if n == 0:
        return math.nan, math.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
