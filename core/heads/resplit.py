"""Accuracy that does not hang on one split: the shipped recipe retrained on K seeded random re-splits.

MVSA-Single's fixed split (3,611 train / 450 dev / 450 test) gives one test figure; a different draw
of the same 4,511 pairs gives another. ``resplit_accuracy`` pools the labelled CSVs, and for each seed
draws a random train / dev / test partition of the same sizes, trains exactly what ships on it and
scores that split's test part once:

1. unless ``frozen``: the LoRA text adapter (``core.encoders.finetune``, ``FinetuneConfig`` defaults) on the
   split's train texts, its epoch chosen on the split's dev texts;
2. ``core.heads.recipe.build_head`` with the default encoders (plus that adapter), the default
   ``TrainConfig``: heads trained on train, early stopping and temperatures on dev, metrics on test.

The partition is a uniform random permutation of the pooled usable pairs (numpy ``default_rng(seed)``),
not stratified by label: each part's label mix varies as it does in any random split, and that
variation is part of what the spread measures. Training seeds (heads, adapter) stay at the recipe's
defaults, so only the split changes from one seed to the next.

Every split is kept under ``out_dir/split-<seed>/``: its train / dev / test CSVs (with a ``pool_index``
column, the pair's position in ``out_dir/pool.csv``), the adapter (``adapter/``) and the head version
folder (``head/``, whose card holds the full dev and test metrics).
"""
from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core import config
from core.errors import InputError
from core.features.store import FeatureStore
from core.heads.training import MIN_TRAIN_PAIRS, TrainConfig
from core.io.labels import HEAD_NAMES, LABELS

REFERENCE_SIZES = (3611, 450, 450)  # MVSA-Single's train / dev / test
MIN_HELD_OUT = 3                    # the fewest pairs a dev or test part may have
POOL_INDEX = "pool_index"
POOL_SOURCE = "pool_source"
METRICS = ("accuracy", "weighted_f1")


def split_sizes(n_pool: int, sizes: Sequence[int] = REFERENCE_SIZES) -> tuple[int, int, int]:
    """(n_train, n_dev, n_test) for a pool of ``n_pool`` pairs: ``sizes`` itself when they add up to
    ``n_pool``, else dev and test in the same proportions (rounded) and train the rest.

    Raises ValueError when the pool is too small for a trainable train part and held-out parts of at
    least ``MIN_HELD_OUT`` pairs each."""
    if len(sizes) != 3 or any(int(s) <= 0 for s in sizes):
        raise InputError(f"sizes must be three positive counts (train, dev, test); got {tuple(sizes)}")
    total = sum(int(s) for s in sizes)
    if n_pool == total:
        n_train, n_dev, n_test = (int(s) for s in sizes)
    else:
        n_dev = int(round(n_pool * int(sizes[1]) / total))
        n_test = int(round(n_pool * int(sizes[2]) / total))
        n_train = n_pool - n_dev - n_test
    if n_dev < MIN_HELD_OUT or n_test < MIN_HELD_OUT or n_train < MIN_TRAIN_PAIRS:
        raise InputError(
            f"a pool of {n_pool} usable labelled pairs is too small to re-split in the proportions "
            f"{'/'.join(str(int(s)) for s in sizes)}: that gives {n_train} train / {n_dev} dev / {n_test} "
            f"test; at least {MIN_TRAIN_PAIRS} train and {MIN_HELD_OUT} each for dev and test are needed")
    return n_train, n_dev, n_test


def split_indices(n_pool: int, seed: int, sizes: Sequence[int] = REFERENCE_SIZES
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in the pool of the train, dev and test parts for ``seed``: a uniform random
    permutation of ``range(n_pool)`` (numpy ``default_rng(seed)``), cut at the sizes of ``split_sizes``.
    The same seed always gives the same parts; together they cover the pool exactly once."""
    n_train, n_dev, _ = split_sizes(n_pool, sizes)
    order = np.random.default_rng(int(seed)).permutation(n_pool)
    return order[:n_train], order[n_train:n_train + n_dev], order[n_train + n_dev:]


def pool_pairs(csv_paths: Sequence[Path], images_dir: Path, text_encoder, image_encoder,
               store: FeatureStore) -> tuple[pd.DataFrame, np.ndarray, list[str], int]:
    """Read and encode every CSV (``core.heads.recipe.load_labelled_set``) and pool their usable pairs.

    Returns ``(frame, labels, unusable, n_rows)``: the usable rows of all CSVs in order, with a
    ``pool_index`` column (0..n-1) and a ``pool_source`` column ("train.csv row 12", 0-based like
    ``core.io.tables.PairRow.row``); their label indices; one "train.csv row 7: reason" line per row that
    cannot train (no label, no image, an unreadable image, ...); and the number of rows read."""
    from core.heads.recipe import load_labelled_set

    frames, labels, unusable, n_rows = [], [], [], 0
    for path in csv_paths:
        data = load_labelled_set(Path(path), Path(images_dir), text_encoder, image_encoder, store)
        n_rows += len(data.frame) + len(data.skipped)
        unusable += [f"{Path(path).name} {reason}" for reason in data.skipped]
        if len(data.frame):
            frame = data.frame.copy()
            frame[POOL_SOURCE] = _source_rows(Path(path).name, len(data.frame), data.skipped)
            frames.append(frame)
            labels.append(data.features.labels)
    if not frames:
        raise InputError(f"no usable labelled pairs in {', '.join(Path(p).name for p in csv_paths)} "
                         f"({n_rows} rows read); training needs rows with a text, an image and a label"
                         + (f"; first problem: {unusable[0]}" if unusable else ""))
    frame = pd.concat(frames, ignore_index=True).fillna("")
    frame.insert(0, POOL_INDEX, np.arange(len(frame)))
    return frame, np.concatenate(labels), unusable, n_rows


def _source_rows(name: str, n_usable: int, skipped: list[str]) -> list[str]:
    """'name row N' for each usable row, N its 0-based position in the CSV: load_labelled_set keeps
    the usable rows in order and names each skipped one as "row N: reason"."""
    left_out = {int(m.group(1)) for m in (re.match(r"row (\d+):", reason) for reason in skipped) if m}
    positions = [n for n in range(n_usable + len(skipped)) if n not in left_out]
    if len(left_out) != len(skipped) or len(positions) != n_usable:
        return [f"{name} usable pair {k}" for k in range(n_usable)]
    return [f"{name} row {n}" for n in positions]


def resplit_accuracy(csv_paths: Sequence[str | Path], images_dir: str | Path, out_dir: str | Path, *,
                     seeds: Sequence[int], frozen: bool = False, sizes: Sequence[int] = REFERENCE_SIZES,
                     train_config: TrainConfig | None = None, finetune_config=None,
                     store: FeatureStore | None = None, encoders: tuple | None = None,
                     on_split: Callable[[dict], None] | None = None,
                     log: Callable[[str], None] | None = None) -> dict:
    """Retrain the shipped recipe on one random re-split of the pooled CSVs per seed; score each once.

    Takes the labelled CSVs to pool (columns text, image, label; MVSA's text_label / image_label are
    carried along), the folder their image column is relative to, an output folder, the seeds, and
    ``frozen`` (True: the plain default text encoder, no LoRA adapter; False: an adapter trained per
    split, as shipped). ``sizes`` are the reference train / dev / test sizes, scaled to the pool when it
    has another size. ``train_config`` / ``finetune_config`` default to the recipe's; ``store`` to the
    user's feature store; ``encoders`` may pass already loaded plain (text, image) default encoders.
    ``on_split`` is called with each split's entry as it finishes, ``log`` with progress lines.

    Returns ``{"protocol": {...}, "splits": [{"seed", "n_train", "n_dev", "n_test", "text": {"accuracy",
    "weighted_f1"}, "image": ..., "fused": ..., "seconds", ...}], "summary": {head: {metric: {"mean", "sd",
    "min", "max"}}}}`` (sd: sample standard deviation, None for one split); also written to
    ``out_dir/resplit.json``. Raises ValueError for a missing CSV or image folder, CSVs without usable
    labelled pairs, a pool too small for the sizes, or no / repeated seeds."""
    from core.encoders import DEFAULT_IMAGE_SPEC, DEFAULT_TEXT_SPEC, MINILM_SPEC, load_image_encoder, load_text_encoder
    from core.encoders.finetune import FinetuneConfig

    started = time.time()
    log = log or (lambda _: None)
    csv_paths = [Path(p) for p in csv_paths]
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds repeat ({' '.join(map(str, seeds))}): each seed is one split and one folder")
    if not csv_paths:
        raise InputError("give at least one labelled CSV to pool")
    for path in csv_paths:
        if not path.is_file():
            raise InputError(f"CSV not found: {path}")
    if not images_dir.is_dir():
        raise InputError(f"image folder not found: {images_dir}")
    split_sizes(1 << 30, sizes)  # checks the sizes themselves before any encoding
    train_config = train_config or TrainConfig()
    finetune_config = None if frozen else (finetune_config or FinetuneConfig())
    store = store or FeatureStore(config.feature_store_path())
    if encoders is not None:
        text_encoder, image_encoder = encoders
    else:
        text_encoder, image_encoder = load_text_encoder(DEFAULT_TEXT_SPEC), load_image_encoder(DEFAULT_IMAGE_SPEC)

    log(f"pooling {len(csv_paths)} CSV(s): reading and encoding every pair once")
    pool, labels, unusable, n_rows = pool_pairs(csv_paths, images_dir, text_encoder, image_encoder, store)
    n_train, n_dev, n_test = split_sizes(len(pool), sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool.to_csv(out_dir / "pool.csv", index=False)
    pool_seconds = time.time() - started
    log(f"pool: {len(pool)} usable pairs of {n_rows} rows ({len(unusable)} unusable), {pool_seconds:.0f}s; "
        f"splits of {n_train} / {n_dev} / {n_test}")

    protocol = {
        "csvs": [str(p) for p in csv_paths],
        "images": str(images_dir),
        "rows_read": n_rows,
        "pool": len(pool),
        "unusable": unusable,
        "reference_sizes": [int(s) for s in sizes],
        "sizes": {"train": n_train, "dev": n_dev, "test": n_test},
        "seeds": seeds,
        "frozen": bool(frozen),
        "split": "uniform random permutation of the pooled usable pairs (numpy default_rng(seed)), cut "
                 "into train / dev / test in that order; not stratified by label",
        "recipe": {
            "text_encoder": DEFAULT_TEXT_SPEC,
            "text_adapter": None if frozen else {
                "how": "LoRA fine-tuning (core.encoders.finetune) on the split's train texts, epoch chosen on its dev",
                "base_spec": MINILM_SPEC, "config": asdict(finetune_config)},
            "image_encoder": DEFAULT_IMAGE_SPEC,
            "train_config": train_config.as_dict(),
            "choices": "early stopping and temperatures on the split's dev; its test scored once at the end",
        },
        "pool_seconds": round(pool_seconds, 1),
    }
    splits = []
    for seed in seeds:
        splits.append(_run_split(seed, pool, labels, sizes, images_dir, out_dir / f"split-{seed}",
                                 frozen=frozen, text_encoder=text_encoder, image_encoder=image_encoder,
                                 train_config=train_config, finetune_config=finetune_config, store=store,
                                 log=log))
        if on_split:
            on_split(splits[-1])
    from core.machine import machine_block

    report = {"protocol": protocol, "splits": splits, "summary": summarise(splits),
              "seconds": round(time.time() - started, 1), "machine": machine_block()}
    (out_dir / "resplit.json").write_text(json.dumps(report, indent=2))
    return report


def _run_split(seed: int, pool: pd.DataFrame, labels: np.ndarray, sizes, images_dir: Path, folder: Path, *,
               frozen: bool, text_encoder, image_encoder, train_config, finetune_config, store, log) -> dict:
    """One seed: write its three CSVs, train the adapter (unless frozen) and the heads, score its test."""
    from core.encoders import DEFAULT_IMAGE_SPEC, DEFAULT_TEXT_SPEC, MINILM_SPEC, load_text_encoder
    from core.encoders.finetune import finetune_text_encoder
    from core.heads.recipe import build_head

    started = time.time()
    # Each part in pool order, so a part's rows meet the training code in the same order whatever the seed.
    parts = {name: np.sort(idx) for name, idx in zip(("train", "dev", "test"), split_indices(len(pool), seed, sizes))}
    folder.mkdir(parents=True, exist_ok=True)
    csvs = {}
    for name, idx in parts.items():
        csvs[name] = folder / f"{name}.csv"
        pool.iloc[idx].to_csv(csvs[name], index=False)
    entry: dict = {"seed": seed}
    adapter = None
    split_text_encoder = text_encoder
    if not frozen:
        adapter = folder / "adapter"
        log(f"split {seed}: LoRA text adapter on {len(parts['train'])} train texts (minutes)")
        t0 = time.time()
        texts = lambda idx: list(pool["text"].iloc[idx])  # noqa: E731
        summary = finetune_text_encoder(texts(parts["train"]), labels[parts["train"]], texts(parts["dev"]),
                                        labels[parts["dev"]], adapter, spec=MINILM_SPEC, config=finetune_config)
        entry["adapter"] = {"best_epoch": summary["best"]["epoch"],
                            "dev_accuracy": round(float(summary["best"]["dev_accuracy"]), 4),
                            "seconds": round(time.time() - t0, 1)}
        split_text_encoder = load_text_encoder(DEFAULT_TEXT_SPEC, adapter=adapter)
    log(f"split {seed}: heads")
    card = build_head(csvs["train"], csvs["dev"], images_dir, folder / "head", text_spec=DEFAULT_TEXT_SPEC,
                      image_spec=DEFAULT_IMAGE_SPEC, text_adapter=adapter, test_csv=csvs["test"],
                      train_config=train_config, store=store, note=f"re-split seed {seed}",
                      log=lambda _: None, encoders=(split_text_encoder, image_encoder))
    test = card.metrics["test"]
    entry.update({"n_train": card.training["n_train"], "n_dev": card.training["n_dev"], "n_test": test["n"]})
    for head in HEAD_NAMES:
        entry[head] = {metric: float(test[head][metric]) for metric in METRICS}
    entry["test_labels"] = {label: int((labels[parts["test"]] == i).sum()) for i, label in enumerate(LABELS)}
    entry["folder"] = str(folder)
    entry["seconds"] = round(time.time() - started, 1)
    return entry


def summarise(splits: Sequence[dict]) -> dict:
    """Mean, sample standard deviation (ddof=1; None for a single split), min and max over ``splits``
    of each head's test accuracy and weighted F1: ``{head: {metric: {"mean", "sd", "min", "max"}}}``."""
    summary = {}
    for head in HEAD_NAMES:
        summary[head] = {}
        for metric in METRICS:
            values = [float(s[head][metric]) for s in splits]
            summary[head][metric] = {
                "mean": statistics.fmean(values) if values else None,
                "sd": statistics.stdev(values) if len(values) >= 2 else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
            }
    return summary


def attach_to_card(report: dict, head_dir: str | Path) -> dict:
    """Record a re-split report's summary in a head version's ``card.json`` (key ``resplit``: seeds,
    frozen, pool, summary, machine, measured_at), so the app shows it beside the head's fixed-split
    test figures. Only the card changes (atomically); the weights and their hash stay. Returns the
    block written."""
    import os

    from core.registry import CARD_FILE, HeadCard

    card_path = Path(head_dir) / CARD_FILE
    card = HeadCard.from_dict(json.loads(card_path.read_text()))
    block = {"seeds": list(report["protocol"]["seeds"]), "frozen": bool(report["protocol"]["frozen"]),
             "pool": int(report["protocol"]["pool"]), "summary": report["summary"],
             "machine": report["machine"], "measured_at": report["machine"]["measured_at"],
             "command": "python -m core.cli resplit --seeds " + " ".join(map(str, report["protocol"]["seeds"]))
             + (" --frozen" if report["protocol"]["frozen"] else "")}
    tmp = card_path.with_name(f"{CARD_FILE}.tmp")
    tmp.write_text(json.dumps(card.replace(resplit=block).to_dict(), indent=2))
    os.replace(tmp, card_path)
    return block
