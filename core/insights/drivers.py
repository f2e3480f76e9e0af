"""Drivers: the terms most associated with each sentiment class (or with one slice of posts against
another), ranked by the weighted log-odds with an informative Dirichlet prior of Monroe, Colaresi and
Quinn (2008, "Fightin' words", Political Analysis 16(4)).

For a group g (a predicted class, a labelled class, a brand …) against the rest r of the posts, and a
term w counted in y_gw posts of g and y_rw posts of r (n_g, n_r: all term counts of each side), with a
prior α_w = the term's count in the whole corpus (α_0 = their sum):

    δ_w = log((y_gw + α_w) / (n_g + α_0 − y_gw − α_w)) − log((y_rw + α_w) / (n_r + α_0 − y_rw − α_w))
    σ²_w ≈ 1 / (y_gw + α_w) + 1 / (y_rw + α_w)          score = δ_w / σ_w  (a z-score)

The prior pulls a rare term's log-odds towards zero and the variance keeps one-off words from the
top, so the list does not drown in rare words the way a raw ratio does. A term is counted once per
post (a post that repeats a word ten times is one voice), and terms in fewer than ``min_posts`` posts
are left out. Counting goes through scikit-learn's sparse ``CountVectorizer`` with the tokens of
``core.insights.tokens``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from core.insights.tokens import term_kind, tokenise
from core.io.labels import LABELS

DEFAULT_TOP = 15
DEFAULT_MIN_POSTS = 3
DEFAULT_EXAMPLES = 3
DRIVER_COLUMNS = ["term", "kind", "score", "n", "share", "n_rest", "share_rest", "examples"]


def term_matrix(texts: Sequence, *, min_posts: int = 1, stop_words=None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(posts × terms) 0/1 matrix of which post holds which term, and the terms (column order).
    Terms in fewer than ``min_posts`` posts are dropped; ``stop_words``: a list of terms to leave out
    (or "english", scikit-learn's list). No terms at all gives a (posts × 0) matrix."""
    vectorizer = CountVectorizer(tokenizer=tokenise, lowercase=False, token_pattern=None, binary=True,
                                 min_df=max(1, int(min_posts)), stop_words=stop_words, dtype=np.int32)
    texts = ["" if not isinstance(t, str) else t for t in texts]
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no post holds a term (empty texts, or every term below min_posts)
        return sparse.csr_matrix((len(texts), 0), dtype=np.int32), np.array([], dtype=object)
    return matrix.tocsr(), vectorizer.get_feature_names_out().astype(object)


def weighted_log_odds(counts: np.ndarray, rest: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Monroe et al.'s z-scores of each term's log-odds in ``counts`` against ``rest`` (1-d arrays of
    term counts), with the informative Dirichlet prior ``prior`` (the same shape, all > 0)."""
    counts, rest, prior = (np.asarray(a, dtype=float) for a in (counts, rest, prior))
    a0, n_g, n_r = prior.sum(), counts.sum(), rest.sum()
    tiny = 1e-12  # a corpus of a single term leaves nothing on the other side of the odds
    log_g = np.log(counts + prior) - np.log(np.maximum(n_g + a0 - counts - prior, tiny))
    log_r = np.log(rest + prior) - np.log(np.maximum(n_r + a0 - rest - prior, tiny))
    return (log_g - log_r) / np.sqrt(1.0 / (counts + prior) + 1.0 / (rest + prior))


@dataclass
class Drivers:
    """Terms per group: ``tables[group]`` is a frame of ``DRIVER_COLUMNS`` (best first): the term, its
    kind, its z-score, how many posts of the group hold it (``n``, and ``share`` of the group's posts),
    the same for the other posts (``n_rest``, ``share_rest``) and ``examples``: positions of up to a
    few posts of the group that hold it. ``sizes``: posts per group; ``terms``: distinct terms counted."""
    tables: dict[str, pd.DataFrame]
    sizes: dict[str, int]
    terms: int
    left_out: int = 0                                   # posts in no group (no class, or in both slices)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[dict]]:
        """``{group: [{term, score, n}, …]}``, the command line's form."""
        return {group: [{"term": str(r.term), "score": round(float(r.score), 3), "n": int(r.n)}
                        for r in table.itertuples()] for group, table in self.tables.items()}


def find_drivers(texts: Sequence, groups: Sequence, *, order: Sequence[str] | None = None, top: int = DEFAULT_TOP,
                 min_posts: int = DEFAULT_MIN_POSTS, examples: int = DEFAULT_EXAMPLES,
                 example_priority: Sequence[float] | None = None) -> Drivers:
    """The ``top`` terms of each group against all other grouped posts.

    ``texts`` and ``groups`` run in parallel; a post whose group is None / NaN takes no part. ``order``:
    which groups to report and in which order (default: the sentiment classes when the groups are
    classes, else sorted); a group with no posts gets an empty table. ``example_priority``: per post,
    higher first when choosing example posts (the confidence, say); default: the order given. Only
    terms more frequent in the group than the prior expects (score > 0) are listed."""
    groups = pd.Series(list(groups), dtype=object)
    texts = list(texts)
    if len(texts) != len(groups):
        raise ValueError(f"{len(texts)} texts but {len(groups)} groups")
    grouped = groups.notna().to_numpy()
    names = [str(g) for g in groups[grouped].unique()]
    if order is None:
        order = [c for c in LABELS if c in names] if set(names) <= set(LABELS) else sorted(names)
    order = [str(g) for g in order]
    positions = np.flatnonzero(grouped)
    matrix, vocabulary = term_matrix([texts[i] for i in positions], min_posts=min_posts)
    member = groups[grouped].astype(str).to_numpy()
    sizes = {g: int((member == g).sum()) for g in order}
    priority = (np.zeros(len(texts)) if example_priority is None
                else np.nan_to_num(np.asarray(example_priority, dtype=float), nan=-np.inf))
    columns = matrix.tocsc()
    total = np.asarray(matrix.sum(axis=0)).ravel().astype(float)
    tables = {}
    for g in order:
        mine = member == g
        if not mine.any() or len(vocabulary) == 0:
            tables[g] = pd.DataFrame(columns=DRIVER_COLUMNS)
            continue
        counts = np.asarray(matrix[mine].sum(axis=0)).ravel().astype(float)
        rest = total - counts
        scores = weighted_log_odds(counts, rest, total)
        best = [t for t in np.argsort(-scores, kind="stable")[:top] if scores[t] > 0 and counts[t] > 0]
        n_rest_posts = max(int((~mine).sum()), 1)
        rows = []
        for t in best:
            holders = columns.indices[columns.indptr[t]:columns.indptr[t + 1]]
            holders = positions[holders[mine[holders]]]  # back to positions in ``texts``
            chosen = holders[np.argsort(-priority[holders], kind="stable")[:examples]]
            rows.append({"term": vocabulary[t], "kind": term_kind(vocabulary[t]), "score": float(scores[t]),
                         "n": int(counts[t]), "share": counts[t] / sizes[g], "n_rest": int(rest[t]),
                         "share_rest": rest[t] / n_rest_posts, "examples": [int(i) for i in chosen]})
        tables[g] = pd.DataFrame(rows, columns=DRIVER_COLUMNS)
    return Drivers(tables, sizes, len(vocabulary), left_out=int((~grouped).sum()))


def slice_drivers(texts: Sequence, in_a: Sequence[bool], in_b: Sequence[bool], *, names: tuple[str, str] = ("A", "B"),
                  **options) -> Drivers:
    """Two slices side by side (brand A against brand B, this period against the last): the terms that
    set each slice apart from the other, by the same method with the two slices as the groups. A post
    in both slices or in neither takes no part (``left_out``; a note says how many were in both).
    ``options``: as for ``find_drivers``."""
    in_a, in_b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)
    if names[0] == names[1]:
        raise ValueError("the two slices need different names")
    groups = np.full(len(in_a), None, dtype=object)
    groups[in_a & ~in_b] = names[0]
    groups[in_b & ~in_a] = names[1]
    result = find_drivers(texts, groups, order=list(names), **options)
    both = int((in_a & in_b).sum())
    if both:
        result.notes.append(f"{both} posts are in both slices and are left out")
    return result
