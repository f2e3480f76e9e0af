"""Two head versions on the same posts: how often they agree, where they differ, and — with labels —
whether one is right more often than chance allows.

The paired test is McNemar's (1947) on the labelled posts where exactly one version is right:
b = A right and B wrong, c = A wrong and B right. Under "equally good" each such post is a fair coin,
so with fewer than 25 of them the p-value is the exact two-sided binomial one, 2·P(X ≤ min(b, c)) for
X ~ Binomial(b + c, ½) (capped at 1); from 25 on, the chi-square with Edwards' continuity correction,
(|b − c| − 1)² / (b + c) on one degree of freedom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import binomtest, chi2

from core.analysis.stats import wilson_interval
from core.io.labels import LABEL_TO_INDEX, LABELS, LabelError, normalise_label

EXACT_BELOW = 25  # discordant posts under which McNemar's p is the exact binomial one


@dataclass(frozen=True)
class McNemar:
    """McNemar's test: ``b`` (A right, B wrong), ``c`` (A wrong, B right), the statistic (None for the
    exact test), the two-sided p-value and the method's name."""
    b: int
    c: int
    statistic: float | None
    p: float
    method: str


def mcnemar(b: int, c: int) -> McNemar:
    """McNemar's test of b against c (see the module docstring for which form is used when)."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    if b + c == 0:
        return McNemar(b, c, None, 1.0, "no discordant posts")
    if b + c < EXACT_BELOW:
        return McNemar(b, c, None, float(min(1.0, binomtest(b, b + c, 0.5).pvalue)), "exact binomial")
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemar(b, c, float(statistic), float(chi2.sf(statistic, df=1)), "chi-square, continuity-corrected")


@dataclass
class Comparison:
    """Version A against version B on the same posts.

    ``n``: posts both versions classified; ``agree`` / ``changed``: how many of them got the same /
    another class; ``matrix``: posts by A's class (rows) and B's (columns), in ``LABELS`` order;
    ``changed_rows``: positions (in the inputs) of the posts that changed class; ``left_out``: posts
    that one of the versions did not classify. With labels: ``labelled`` posts, each version's
    ``accuracy`` with its 95 % Wilson interval, and ``test`` (McNemar)."""
    names: tuple[str, str]
    n: int
    agree: int
    changed: int
    matrix: list[list[int]]
    changed_rows: np.ndarray
    left_out: int = 0
    labelled: int = 0
    accuracy: dict[str, float] | None = None
    accuracy_ci: dict[str, tuple[float, float]] | None = None
    test: McNemar | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        """The share of posts both versions put in the same class (NaN without posts)."""
        return self.agree / self.n if self.n else math.nan

    def to_json(self) -> dict:
        """The command line's form: ``n``, ``agree`` (the share that kept its class), ``changed`` (posts),
        ``matrix``, ``accuracy: {A, B}`` and ``mcnemar_p`` (both null without labels), and ``versions``
        (which version is A and which B)."""
        accuracy = None if self.accuracy is None else {k: round(v, 6) for k, v in self.accuracy.items()}
        return {"versions": {"A": self.names[0], "B": self.names[1]}, "n": self.n,
                "agree": None if not self.n else round(self.agreement, 6), "changed": self.changed,
                "matrix": self.matrix, "accuracy": accuracy,
                "mcnemar_p": None if self.test is None else self.test.p}


def _class_index(values: Sequence) -> np.ndarray:
    """Class index of each value (-1 where it is not a class: no prediction, no or unknown label)."""
    return np.array([LABEL_TO_INDEX.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64)


def _label_index(values: Sequence) -> np.ndarray:
    """Class index of each label in any accepted spelling (-1 where unlabelled or unreadable)."""
    out = np.full(len(values), -1, dtype=np.int64)
    for i, value in enumerate(values):
        try:
            out[i] = LABEL_TO_INDEX[normalise_label(value)]
        except LabelError:
            pass
    return out


def compare_predictions(a: Sequence, b: Sequence, labels: Sequence | None = None, *,
                        names: tuple[str, str] = ("A", "B")) -> Comparison:
    """Compare two versions' predicted classes (parallel sequences of class names, None where a
    version gave none) and, when given, the posts' labels (class names, None where unlabelled)."""
    ia, ib = _class_index(a), _class_index(b)
    if len(ia) != len(ib) or (labels is not None and len(labels) != len(ia)):
        raise ValueError("the predictions and labels must cover the same posts")
    both = (ia >= 0) & (ib >= 0)
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(matrix, (ia[both], ib[both]), 1)
    changed = both & (ia != ib)
    result = Comparison(tuple(names), int(both.sum()), int((both & (ia == ib)).sum()), int(changed.sum()),
                        matrix.tolist(), np.flatnonzero(changed), left_out=int((~both).sum()))
    if labels is not None:
        truth = _label_index(labels)
        scored = both & (truth >= 0)
        result.labelled = int(scored.sum())
        if result.labelled:
            right_a, right_b = ia[scored] == truth[scored], ib[scored] == truth[scored]
            result.accuracy = {"A": float(right_a.mean()), "B": float(right_b.mean())}
            low, high = wilson_interval([right_a.sum(), right_b.sum()], result.labelled)
            result.accuracy_ci = {"A": (float(low[0]), float(high[0])), "B": (float(low[1]), float(high[1]))}
            result.test = mcnemar(int((right_a & ~right_b).sum()), int((~right_a & right_b).sum()))
        else:
            result.notes.append("no post has a label: accuracy and the paired test need labels")
    return result
