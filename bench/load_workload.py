"""The load test's pairs: MVSA-Single rows (``dev.csv`` then ``train.csv``, never ``test.csv``) when present,
else pictures drawn here; who gets which (the batch user, each explore user, the correction run, the
warm-up), so no phase finds another's features cached."""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core import config

MVSA = config.mvsa_dir()
CORRECTION_PAIRS = 8


@dataclass(frozen=True)
class Pair:
    id: str
    text: str
    image: Path
    label: str


@dataclass
class Workload:
    batch: list[Pair]
    explore: list[list[Pair]]
    correction: list[Pair]
    warmup: Pair
    data_root: Path       # the server may read images under this folder (MMSA_DATA_ROOT)
    image_folder: str     # the batch pictures' folder, relative to data_root
    source: str


def _mvsa_rows(name: str) -> list[dict]:
    with open(MVSA / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def mvsa_workload(n_batch: int, users: int, per_user: int) -> Workload:
    """Batch: dev.csv rows, then train.csv rows when n_batch exceeds dev; explore, correction and the
    warm-up pair: further train.csv rows, so no phase finds another's features cached."""
    dev, train = _mvsa_rows("dev.csv"), _mvsa_rows("train.csv")
    pool = dev + train

    def pair(r):
        return Pair(r["id"], r["text"], MVSA / "images" / r["image"], r["label"])

    batch = [pair(r) for r in pool[:n_batch]]
    rest = [pair(r) for r in pool[n_batch:]]
    explore = [rest[u * per_user:(u + 1) * per_user] for u in range(users)]
    used = users * per_user
    return Workload(batch, explore, rest[used:used + CORRECTION_PAIRS], rest[used + CORRECTION_PAIRS],
                    MVSA.parent, f"{MVSA.name}/images", f"MVSA-Single dev.csv (+ train.csv) rows, {MVSA}")


def _draw(path: Path, mood: str, seed: int) -> Path:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    base = {"positive": (250, 200, 60), "negative": (30, 40, 70), "neutral": (128, 128, 128)}[mood]
    picture = Image.new("RGB", (480, 360), tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in base))
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y = rng.randint(0, 440), rng.randint(0, 320)
        draw.ellipse([x, y, x + rng.randint(10, 60), y + rng.randint(10, 60)],
                     fill=tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base))
    picture.save(path, quality=90)
    return path


def drawn_workload(folder: Path, n_batch: int, users: int, per_user: int) -> Workload:
    words = {"positive": ["lovely", "great", "happy", "amazing"], "negative": ["awful", "sad", "broken", "worst"],
             "neutral": ["schedule", "meeting", "form", "list"]}
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    total = n_batch + users * per_user + CORRECTION_PAIRS + 1
    pairs = []
    for k in range(total):
        label = ("positive", "negative", "neutral")[k % 3]
        text = f"{words[label][k % 4]} day number {k}, {words[label][(k // 4) % 4]} again"
        pairs.append(Pair(f"p{k}", text, _draw(images / f"p{k}.jpg", label, k), label))
    batch, rest = pairs[:n_batch], pairs[n_batch:]
    explore = [rest[u * per_user:(u + 1) * per_user] for u in range(users)]
    used = users * per_user
    return Workload(batch, explore, rest[used:used + CORRECTION_PAIRS], rest[used + CORRECTION_PAIRS],
                    folder, "images", "pairs drawn by the script (MVSA-Single absent)")


def pairs_csv(pairs: list[Pair], path: Path) -> Path:
    pd.DataFrame([{"id": p.id, "text": p.text, "image": p.image.name, "label": p.label} for p in pairs]) \
        .to_csv(path, index=False)
    return path
