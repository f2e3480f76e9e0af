"""Two head versions on a saved run's filtered posts: each scores the posts again from the features the
feature store holds (``core.insights.rescore``: only the heads run), then ``core.insights.compare``
counts agreement, the version-against-version matrix, the changed posts and, where the run has labels,
each version's accuracy and McNemar's test.

    with RunQuery.for_run(run) as query:
        result = compare_on_run(query, Filters(), "20240301-…", "/path/to/version", store)
        result.comparison.to_json()   # {versions, n, agree, changed, matrix, accuracy, mcnemar_p}
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.analysis.engine import RunQuery
from core.analysis.filters import Filters
from core.features.store import FeatureStore
from core.insights.compare import Comparison
from core.insights.rescore import Version, compare_versions
from core.insights.run_posts import filtered_posts, label_classes

CHANGED_COLUMNS = ["row", "id", "text", "A", "B", "label"]


@dataclass
class RunComparison:
    """``comparison`` of the two versions on the filtered posts, and ``changed``: one row per post that
    changed class (``CHANGED_COLUMNS``: the run's row number, id, text, A's and B's class, the label or
    None), in row order."""
    comparison: Comparison
    changed: pd.DataFrame

    def to_json(self) -> dict:
        """The comparison's JSON (``Comparison.to_json``) with ``left_out``: posts one of the versions could
        not score (their features were not in the store)."""
        return {**self.comparison.to_json(), "left_out": self.comparison.left_out}


def compare_on_run(query: RunQuery, filters: Filters | None, a: str | Version, b: str | Version,
                   store: FeatureStore, *, registry=None) -> RunComparison:
    """Version ``a`` against version ``b`` (ids of ``registry``, version folders or ``Version``s) on the
    posts ``filters`` keep; labels are used when the run has a label column."""
    posts = filtered_posts(query, filters, images=True)
    labels = label_classes(posts["label"]) if query.label_column is not None else None
    comparison, rescored = compare_versions(a, b, store, posts["text"].tolist(), posts["image_path"].tolist(), labels,
                                            registry=registry)
    name_a, name_b = comparison.names
    changed = posts.iloc[comparison.changed_rows]
    table = pd.DataFrame({"row": changed["row"].to_numpy(), "id": changed["id"].to_numpy(),
                          "text": changed["text"].to_numpy(),
                          "A": rescored.classes[name_a][comparison.changed_rows],
                          "B": rescored.classes[name_b][comparison.changed_rows],
                          "label": [labels[i] for i in comparison.changed_rows] if labels is not None else None},
                         columns=CHANGED_COLUMNS)
    return RunComparison(comparison, table)
