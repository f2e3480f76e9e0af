"""Benchmark: themes and drivers of a 100,000-post run whose text features are already in the store.

    python bench/bench_themes.py [--rows 100000] [--home DIR] [--threads 1 0] [--json]

The posts are built from real texts: MVSA-Single train + dev (never test) and TweetEval val, encoded
once with the bundled text encoder into a feature store of their own (``--home``, default
``/tmp/mmsa-bench-insights``; kept between runs, so only the first run encodes). Each of the N posts
is one of those texts with its row number appended (a number alone is no term, so drivers and theme
names see the real text) and, as its stored vector, the real text's vector plus Gaussian noise of 5 %
of each dimension's spread: embeddings with the structure of real posts, one store entry per post,
as a run's would be. Without the data, drawn word-salad texts on six topics stand in (said so in
the output).

Timed, after that set-up: the themes from the store (keys, store reads, PCA, choice of k, k-means,
c-TF-IDF, mix, weekly trend) once per ``--threads`` value (0: the libraries' default thread pools),
and the drivers of each predicted class. The last line with ``--json`` is one JSON object with
``themes_s`` (per thread setting), ``drivers_s``, the themes found, the data source, the load average
of the machine while it ran, and the ``machine`` block.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core import config  # noqa: E402
from core.features.store import FeatureStore, text_features  # noqa: E402
from core.insights.drivers import find_drivers  # noqa: E402
from core.insights.features import StoredVectors, text_keys  # noqa: E402
from core.insights.themes import find_themes  # noqa: E402
from core.io.labels import LABELS  # noqa: E402
from core.machine import describe_machine, machine_block  # noqa: E402

BENCH_KEY = "bench:tiled-with-noise"  # the store key of the synthesised posts' vectors
NOISE = 0.05


def real_texts() -> tuple[list[str], list[str], str]:
    """(texts, labels, source): MVSA train + dev and TweetEval val when present, else drawn texts."""
    frames, names = [], []
    for path in (config.mvsa_dir() / "train.csv", config.mvsa_dir() / "dev.csv",
                 config.shared_data_dir() / "tweeteval_sentiment" / "val.csv"):
        if path.exists():
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False)[["text", "label"]])
            names.append(f"{path.parent.name}/{path.name}")
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        frame = frame[frame["text"].str.strip() != ""].drop_duplicates("text")
        return frame["text"].tolist(), frame["label"].tolist(), " + ".join(names)
    rng = np.random.default_rng(0)
    topics = [["rain", "flood", "storm"], ["beach", "sun", "holiday"], ["coffee", "morning", "cup"],
              ["match", "goal", "team"], ["concert", "music", "band"], ["train", "delay", "station"]]
    texts = [" ".join(rng.choice(topics[k % 6], 4)) + f" {k}" for k in range(3000)]
    return texts, list(rng.choice(LABELS, 3000)), "drawn texts (MVSA / TweetEval not found)"


def build_run(rows: int, home: Path, log) -> tuple[list[str], np.ndarray, pd.Series, FeatureStore, int, str]:
    """The N posts, their classes and dates, and a store holding one vector per post (built once)."""
    from core.encoders import load_text_encoder

    texts, labels, source = real_texts()
    store = FeatureStore(home / "features.sqlite")
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(texts), rows)
    posts = [f"{texts[i]} {n}" for n, i in enumerate(pick)]
    classes = np.asarray(labels, dtype=object)[pick]
    dates = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, rows), unit="h"))
    keys = text_keys(posts)
    encoder = load_text_encoder()
    if store.count(BENCH_KEY) < rows or len(store.get_many(BENCH_KEY, keys[-50:])) < 50:
        started = time.perf_counter()
        base = text_features(encoder, store, texts)  # encodes only what this store has not seen
        log(f"set-up: {len(texts)} real texts encoded or read from the store in {time.perf_counter() - started:.0f} s")
        spread = base.std(axis=0, keepdims=True)
        for start in range(0, rows, 5000):
            block = slice(start, min(rows, start + 5000))
            noisy = base[pick[block]] + NOISE * spread * rng.standard_normal((len(pick[block]), base.shape[1]))
            store.put_many(BENCH_KEY, keys[block], noisy.astype(np.float32))
        log(f"set-up: {rows} post vectors stored in {time.perf_counter() - started:.0f} s (once per --home)")
    return posts, classes, dates, store, encoder.dim, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/mmsa-bench-insights"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="BLAS / OpenMP threads for the themes, one run each (0: the libraries' default)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line, last")
    args = parser.parse_args()
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    posts, classes, dates, store, dim, source = build_run(args.rows, args.home, log)
    loads = [os.getloadavg()[0]]

    themes_s, found = {}, None
    for threads in args.threads:
        started = time.perf_counter()
        source_vectors = StoredVectors(store, BENCH_KEY, text_keys(posts), dim)
        found = find_themes(source_vectors, posts, classes=classes, dates=dates, threads=threads or None)
        themes_s[str(threads or "default")] = round(time.perf_counter() - started, 2)
        loads.append(os.getloadavg()[0])
        log(f"themes, {threads or 'default'} thread(s): {themes_s[str(threads or 'default')]} s "
            f"({found.seconds}); k = {found.k}")

    started = time.perf_counter()
    drivers = find_drivers(posts, classes)
    drivers_s = round(time.perf_counter() - started, 2)
    loads.append(os.getloadavg()[0])
    log(f"drivers: {drivers_s} s over {drivers.terms} terms")
    block = machine_block()
    figures = {
        "rows": args.rows, "source": f"{source}, tiled to {args.rows} posts with {NOISE:.0%} noise",
        "themes_s": themes_s, "themes_steps_s": found.seconds if found else None, "k": found.k if found else None,
        "silhouette": found.silhouette if found else None,
        "no_theme_share": round(float((found.assignment < 0).mean()), 4) if found else None,
        "top_themes": [{"terms": r["terms"][:4], "n": r["n"]} for r in found.to_json()[:5]] if found else None,
        "drivers_s": drivers_s, "negative_drivers": [d["term"] for d in drivers.to_json().get("negative", [])[:8]],
        "load_average_1min": [round(x, 2) for x in loads], "machine": block,
    }
    log(f"machine: {describe_machine(block)}; 1-minute load average during the run: {figures['load_average_1min']}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
