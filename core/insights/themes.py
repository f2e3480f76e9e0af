"""Themes: a run's posts grouped by what they talk about, from the text features the store already
holds (image features optional), with scikit-learn.

1. Each post's vector is scaled to length 1 (with pictures: the text and image vectors each scaled,
   the image part weighted by ``image_weight``, then the whole scaled again), so closeness means the
   cosine similarity the encoders are trained for.
2. PCA (randomised SVD fitted on a sample of ``fit_sample`` posts) keeps ``dims`` dimensions; the run
   is projected chunk by chunk, so a large run never holds all its full-size vectors at once.
3. k-means (``KMeans`` up to ``exact_up_to`` posts, else ``MiniBatchKMeans``). The number of themes,
   unless given, is the candidate with the best silhouette on a sample of ``sample`` posts.
4. **No theme**: a post farther from its theme's centre than the theme's median distance plus
   ``outlier_mads`` robust standard deviations (1.4826 × the median absolute deviation, at least a
   quarter of the whole run's) fits no theme; so do the posts of a theme smaller than
   ``max(min_size, min_share × posts)`` and posts without text features. Their id is -1.
5. Themes are numbered by size (0 the largest) and named by their c-TF-IDF terms (``core.insights.ctfidf``).

Each theme then gets its size and share, its sentiment mix (posts per predicted class, shares with 95 %
Wilson intervals, net = positive − negative share) and, with dates, posts per period.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Protocol, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from core.analysis.stats import net_interval, wilson_interval
from core.insights.ctfidf import theme_terms
from core.io.labels import LABELS

NO_THEME = -1
NO_THEME_NAME = "no theme"
CHUNK = 10_000  # posts projected at a time
FREQS = {"D": "D", "W": "W-SUN", "M": "M"}  # period codes → pandas periods (weeks end on Sunday: start on Monday)


@dataclass
class ThemeConfig:
    """How themes are found; ``to_dict`` / ``from_dict`` round-trip it (stored with the themes)."""
    n_themes: int | None = None                 # None: chosen by silhouette among ``candidates``
    candidates: tuple[int, ...] = (4, 6, 8, 10, 12, 15, 20, 25, 30)
    dims: int = 48
    fit_sample: int = 20_000
    sample: int = 4_000
    exact_up_to: int = 20_000
    outlier_mads: float = 3.0
    min_size: int = 5
    min_share: float = 0.002
    image_weight: float = 0.0                   # 0: text features only
    top_terms: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_themes is not None and int(self.n_themes) < 1:
            raise ValueError(f"number of themes {self.n_themes}: give at least 1")
        self.candidates = tuple(int(k) for k in self.candidates)
        if self.image_weight < 0:
            raise ValueError("image weight must be 0 or more")

    def to_dict(self) -> dict:
        return {**asdict(self), "candidates": list(self.candidates)}

    @classmethod
    def from_dict(cls, data: dict | None) -> ThemeConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "candidates" else v) for k, v in (data or {}).items() if k in known})


class VectorSource(Protocol):
    """Anything that gives the vectors of posts by position (``core.insights.features.StoredVectors``)."""
    def __len__(self) -> int: ...
    def rows(self, positions: Sequence[int]) -> np.ndarray: ...


class _Array:
    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.array)

    def rows(self, positions: Sequence[int]) -> np.ndarray:
        return self.array[np.asarray(positions, dtype=int)]


def _source(vectors) -> VectorSource | None:
    if vectors is None:
        return None
    return vectors if hasattr(vectors, "rows") else _Array(vectors)


@dataclass
class Themes:
    """What ``find_themes`` found. ``assignment``: the theme id of each post (-1: no theme); ``table``:
    one row per theme, the largest first and "no theme" last (see ``summarise``); ``trend``: posts per
    period and theme (None without dates); ``silhouette``: candidate k → score on the sample."""
    assignment: np.ndarray
    table: pd.DataFrame
    trend: pd.DataFrame | None
    k: int
    silhouette: dict[int, float]
    config: ThemeConfig
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> list[dict]:
        """``[{id, terms, n, share}]``, the command line's form (the n add up to the posts)."""
        return themes_json(self.table)


def themes_json(table: pd.DataFrame) -> list[dict]:
    """A theme table (``summarise``) as ``[{id, terms, n, share}]``, "no theme" (id -1) last when present."""
    return [{"id": int(r.id), "terms": list(r.terms), "n": int(r.n), "share": round(float(r.share), 6)}
            for r in table.itertuples()]


def _normalise(block: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)


def _prepared(text: VectorSource, image: VectorSource | None, weight: float, positions: np.ndarray) -> np.ndarray:
    block = _normalise(np.asarray(text.rows(positions), dtype=np.float32))
    if image is not None and weight > 0:
        block = _normalise(np.hstack([block, weight * _normalise(np.asarray(image.rows(positions), np.float32))]))
    return block


def _reduce(text: VectorSource, image: VectorSource | None, config: ThemeConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(posts × dims) unit vectors after PCA, and per post whether it had any features."""
    n = len(text)
    fit_rows = np.sort(rng.choice(n, size=min(n, config.fit_sample), replace=False))
    sample = _prepared(text, image, config.image_weight, fit_rows)
    sample = sample[np.linalg.norm(sample, axis=1) > 0]
    dims = min(config.dims, sample.shape[1], max(len(sample) - 1, 1))
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=config.seed) if len(sample) > dims else None
    if pca is not None:
        pca.fit(sample)
    out = np.zeros((n, dims if pca is not None else sample.shape[1]), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for start in range(0, n, CHUNK):
        positions = np.arange(start, min(n, start + CHUNK))
        block = _prepared(text, image, config.image_weight, positions)
        present[positions] = np.linalg.norm(block, axis=1) > 0
        reduced = pca.transform(block).astype(np.float32) if pca is not None else block
        out[positions] = _normalise(reduced)
    return out, present


def _kmeans(k: int, n: int, config: ThemeConfig, n_init: int = 3):
    if n <= config.exact_up_to:
        return KMeans(n_clusters=k, n_init=n_init, random_state=config.seed)
    return MiniBatchKMeans(n_clusters=k, n_init=n_init, batch_size=4096, random_state=config.seed)


def choose_k(points: np.ndarray, config: ThemeConfig, rng: np.random.Generator) -> tuple[int, dict[int, float]]:
    """The candidate number of themes with the best silhouette on a sample of ``points``, and each
    candidate's score (candidates that the sample cannot support are skipped)."""
    sample = points[rng.choice(len(points), size=min(len(points), config.sample), replace=False)]
    distinct = len(np.unique(sample.round(5), axis=0))
    scores = {}
    for k in config.candidates:
        if k < 2 or k >= distinct:
            continue
        # One k-means++ start per candidate: the comparison needs the shape of the curve, not the best
        # of several fits (the final fit has three starts).
        labels = _kmeans(k, len(sample), config, n_init=1).fit_predict(sample)
        if len(np.unique(labels)) > 1:
            scores[k] = float(silhouette_score(sample, labels))
    if not scores:
        return max(1, min(distinct, min(config.candidates, default=1))), {}
    return max(scores, key=lambda k: (scores[k], -k)), scores


def _outliers(distance: np.ndarray, labels: np.ndarray, k: int, mads: float) -> np.ndarray:
    """Posts farther from their centre than the stated rule allows (see the module docstring)."""
    floor = 0.25 * 1.4826 * np.median(np.abs(distance - np.median(distance)))
    far = np.zeros(len(distance), dtype=bool)
    for theme in range(k):
        mine = labels == theme
        if not mine.any():
            continue
        d = distance[mine]
        median = np.median(d)
        spread = max(1.4826 * np.median(np.abs(d - median)), floor)
        far[mine] = d > median + mads * spread
    return far


def find_themes(text_vectors, texts: Sequence, *, image_vectors=None, classes: Sequence | None = None,
                dates: Sequence | None = None, freq: str = "W", config: ThemeConfig | None = None,
                threads: int | None = 1) -> Themes:
    """Group posts into themes (see the module docstring).

    ``text_vectors``: the posts' text features, an (n, d) array or a ``VectorSource`` (zeros: no
    features); ``texts``: the posts (for the theme names); ``image_vectors``: the same for pictures,
    used when ``config.image_weight`` > 0; ``classes``: each post's predicted class (the sentiment mix);
    ``dates``: anything pandas reads as dates (the trend, per ``freq`` D / W / M). ``threads``: the
    BLAS / OpenMP threads of the PCA and k-means (None: the libraries' default). One is the default:
    on a busy 2-core machine a thread pool waiting for a core made a 1,200-post run 14× slower
    (9.9 s against 0.7 s), and ``bench/bench_themes.py`` measures both at 100,000 posts."""
    with threadpool_limits(limits=threads):
        return _find_themes(text_vectors, texts, image_vectors, classes, dates, freq, config or ThemeConfig())


def _find_themes(text_vectors, texts, image_vectors, classes, dates, freq: str, config: ThemeConfig) -> Themes:
    timer, seconds = time.perf_counter(), {}
    text, image = _source(text_vectors), _source(image_vectors)
    n = len(text)
    if len(texts) != n:
        raise ValueError(f"{n} vectors but {len(texts)} texts")
    rng = np.random.default_rng(config.seed)
    assignment = np.full(n, NO_THEME, dtype=np.int64)
    notes: list[str] = []
    points, present = _reduce(text, image, config, rng) if n else (np.zeros((0, 1), np.float32), np.zeros(0, bool))
    seconds["reduce_s"] = time.perf_counter() - timer
    if (~present).any():
        notes.append(f"{int((~present).sum())} posts have no text features and fit no theme")
    valid = np.flatnonzero(present)
    k, scores = 0, {}
    if len(valid):
        if config.n_themes is not None:
            k = min(int(config.n_themes), len(np.unique(points[valid].round(5), axis=0)))
        else:
            k, scores = choose_k(points[valid], config, rng)
        seconds["choose_k_s"] = time.perf_counter() - timer - seconds["reduce_s"]
        model = _kmeans(k, len(valid), config).fit(points[valid])
        labels = model.predict(points[valid])
        distance = np.linalg.norm(points[valid] - model.cluster_centers_[labels], axis=1)
        labels = np.where(_outliers(distance, labels, k, config.outlier_mads), NO_THEME, labels)
        sizes = np.bincount(labels[labels >= 0], minlength=k)
        smallest = max(config.min_size, math.ceil(config.min_share * n))
        labels = np.where((labels >= 0) & (sizes[np.maximum(labels, 0)] < smallest), NO_THEME, labels)
        kept = [t for t in np.argsort(-sizes, kind="stable") if sizes[t] >= smallest]
        renumber = np.full(k + 1, NO_THEME)
        renumber[np.asarray(kept, dtype=int)] = np.arange(len(kept))
        assignment[valid] = np.where(labels >= 0, renumber[np.maximum(labels, 0)], NO_THEME)
        if len(kept) < k:
            notes.append(f"{k - len(kept)} of {k} themes were smaller than {smallest} posts and fit no theme")
    seconds["cluster_s"] = time.perf_counter() - timer - sum(seconds.values())
    terms = theme_terms(texts, assignment, top=config.top_terms)
    table = summarise(assignment, terms, classes)
    trend = theme_trend(assignment, dates, freq, notes) if dates is not None else None
    seconds["describe_s"] = time.perf_counter() - timer - sum(seconds.values())
    seconds["total_s"] = time.perf_counter() - timer
    return Themes(assignment, table, trend, k, scores, config, notes, {k: round(v, 3) for k, v in seconds.items()})


def summarise(assignment: np.ndarray, terms: dict[int, list[str]], classes: Sequence | None = None) -> pd.DataFrame:
    """One row per theme (largest first, "no theme" last): ``id``, ``name`` (its first three terms),
    ``terms``, ``n``, ``share`` of all posts with its 95 % Wilson interval ``share_lo`` / ``share_hi``; with
    classes also ``n_<class>``, ``share_<class>`` with ``lo_<class>`` / ``hi_<class>`` (95 % Wilson) and
    ``net`` (positive − negative share) with Newcombe's interval ``net_lo`` / ``net_hi``, over the posts
    with a class (``core.analysis.stats``)."""
    total = len(assignment)
    ids = [t for t in sorted(set(int(x) for x in assignment)) if t != NO_THEME]
    if (assignment == NO_THEME).any():
        ids.append(NO_THEME)
    frame = pd.DataFrame({"theme": assignment})
    if classes is not None:
        frame["class"] = pd.Series(list(classes), dtype=object).to_numpy()
    rows = []
    for theme in ids:
        mine = frame[frame["theme"] == theme]
        words = terms.get(theme, [])
        name = NO_THEME_NAME if theme == NO_THEME else (" · ".join(words[:3]) or f"theme {theme}")
        low, high = wilson_interval(len(mine), total)
        row = {"id": theme, "name": name, "terms": words, "n": len(mine), "share": len(mine) / total if total else 0.0,
               "share_lo": float(low), "share_hi": float(high)}
        if classes is not None:
            with_class = int(mine["class"].isin(LABELS).sum())
            row["n_classified"] = with_class
            counts = {label: int((mine["class"] == label).sum()) for label in LABELS}
            low, high = wilson_interval(list(counts.values()), with_class)
            for k, label in enumerate(LABELS):
                row[f"n_{label}"] = counts[label]
                row[f"share_{label}"] = counts[label] / with_class if with_class else math.nan
                row[f"lo_{label}"], row[f"hi_{label}"] = float(low[k]), float(high[k])
            net, net_lo, net_hi = net_interval(counts["positive"], counts["negative"], with_class)
            row["net"], row["net_lo"], row["net_hi"] = float(net), float(net_lo), float(net_hi)
        rows.append(row)
    return pd.DataFrame(rows)


def theme_trend(assignment: np.ndarray, dates: Sequence, freq: str = "W", notes: list[str] | None = None) -> pd.DataFrame:
    """Posts per period and theme: ``period`` (ISO date of its start), ``theme``, ``n`` and ``share``
    (of that period's dated posts). Dates that do not parse are counted in ``notes``, never dropped
    silently."""
    if freq not in FREQS:
        raise ValueError(f"period {freq!r}: use one of {', '.join(FREQS)}")
    parsed = pd.to_datetime(pd.Series(list(dates)), errors="coerce", utc=True, format="mixed")
    frame = pd.DataFrame({"date": parsed.dt.tz_convert(None), "theme": assignment})
    missing = int(frame["date"].isna().sum())
    if missing and notes is not None:
        notes.append(f"{missing} posts have no date that could be read and are not in the trend")
    frame = frame.dropna(subset=["date"])
    if frame.empty:
        return pd.DataFrame(columns=["period", "theme", "n", "share"])
    frame["period"] = frame["date"].dt.to_period(FREQS[freq]).dt.start_time.dt.date.astype(str)
    counts = frame.groupby(["period", "theme"]).size().rename("n").reset_index()
    counts["share"] = counts["n"] / counts.groupby("period")["n"].transform("sum")
    return counts.sort_values(["period", "theme"], ignore_index=True)
