"""Theme names: class-based TF-IDF (c-TF-IDF) as BERTopic defines it (Grootendorst 2022, "BERTopic:
neural topic modeling with a class-based TF-IDF procedure", arXiv:2203.05794).

All posts of a theme are read as one document. For a term t and a theme c:

    W(t, c) = tf(t, c) / Σ_t' tf(t', c)  ·  log(1 + A / f(t))

tf(t, c): posts of theme c that hold t; f(t): posts of all themes that hold it; A: the average number
of term counts per theme. A term frequent in one theme and rare elsewhere ranks first. Common
English words and a few social-media fillers (via, im, just …) are left out, and a term is counted once
per post, as for drivers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from core.insights.drivers import term_matrix

STOP_WORDS = sorted(ENGLISH_STOP_WORDS | {"via", "im", "just", "get", "got", "like", "don't", "it's",
                                          "i'm", "can't", "that's", "you're", "i've", "i'll", "let's"})
MIN_POSTS = 2  # a term in a single post names nothing


def theme_terms(texts: Sequence, themes: Sequence[int], *, top: int = 8) -> dict[int, list[str]]:
    """The ``top`` terms of each theme id in ``themes`` (parallel to ``texts``), best first."""
    themes = np.asarray(themes)
    ids = sorted(int(t) for t in np.unique(themes))
    if not ids:
        return {}
    matrix, vocabulary = term_matrix(texts, min_posts=MIN_POSTS, stop_words=STOP_WORDS)
    if len(vocabulary) == 0:
        return {t: [] for t in ids}
    column = {t: k for k, t in enumerate(ids)}
    one_hot = sparse.csr_matrix((np.ones(len(themes)), (np.arange(len(themes)), [column[int(t)] for t in themes])),
                                shape=(len(themes), len(ids)))
    tf = np.asarray((one_hot.T @ matrix).todense(), dtype=float)           # themes × terms
    per_theme = tf.sum(axis=1, keepdims=True)
    average = tf.sum() / len(ids)
    frequency = np.maximum(tf.sum(axis=0), 1.0)
    weights = (tf / np.maximum(per_theme, 1.0)) * np.log1p(average / frequency)
    out = {}
    for t, k in column.items():
        best = np.argsort(-weights[k], kind="stable")[:top]
        out[t] = [str(vocabulary[j]) for j in best if tf[k, j] > 0]
    return out
