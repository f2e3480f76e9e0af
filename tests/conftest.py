"""Shared fixtures: real bundled encoders (loaded once), small pair sets drawn with Pillow, and a
head trained on them. Nothing here reads ../shared/data."""
from __future__ import annotations

import os
import random
import zlib
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; fail fast, not after retries
# Tests never touch the user's real feature store or head registry.
os.environ["MMSA_HOME"] = tempfile.mkdtemp(prefix="mmsa-tests-")

MVSA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvsa_single"

POSITIVE_TEXTS = ["what a lovely sunny day", "best burger ever, delicious", "so happy with my new puppy",
                  "amazing concert tonight, love it", "great view, wonderful trip", "this cake is perfect"]
NEGATIVE_TEXTS = ["worst service ever, disgusting", "so sad and angry today", "terrible traffic, I hate this",
                  "broken again, awful product", "rainy miserable cold morning", "this is a disaster"]
NEUTRAL_TEXTS = ["the meeting is at 3pm", "bus schedule for route 12", "photo of the office building",
                 "document scanned on tuesday", "list of items for the store", "the train leaves at noon"]


def draw_image(path: Path, mood: str, seed: int, size=(96, 72)) -> Path:
    """Warm bright pictures for positive, dark blue-grey for negative, plain grey for neutral."""
    rng = random.Random(seed)
    base = {"positive": (250, 200, 60), "negative": (30, 40, 70), "neutral": (128, 128, 128)}[mood]
    jitter = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in base)
    image = Image.new("RGB", size, jitter)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randint(0, size[0] - 20), rng.randint(0, size[1] - 20)
        colour = tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base)
        draw.ellipse([x, y, x + rng.randint(8, 20), y + rng.randint(8, 20)], fill=colour)
    image.save(path)
    return path


def make_pair_set(folder: Path, n_per_class: int = 6, seed: int = 0, name: str = "pairs.csv") -> Path:
    """A CSV of n_per_class pairs per label plus an images/ folder; returns the CSV path."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    texts = {"positive": POSITIVE_TEXTS, "negative": NEGATIVE_TEXTS, "neutral": NEUTRAL_TEXTS}
    rows = []
    for label, options in texts.items():
        for k in range(n_per_class):
            name = f"{label}_{seed}_{k}.png"
            draw_image(images / name, label, seed * 1000 + k + zlib.crc32(label.encode()) % 97)
            rows.append({"id": f"{label}-{seed}-{k}", "text": f"{options[k % len(options)]} #{k}",
                         "image": name, "label": label})
    csv = folder / name
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="session")
def encoders():
    from core.encoders import load_image_encoder, load_text_encoder
    return load_text_encoder(), load_image_encoder()


@pytest.fixture(scope="session")
def pair_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    train = make_pair_set(root, n_per_class=8, seed=1, name="train.csv")
    dev = make_pair_set(root, n_per_class=4, seed=2, name="dev.csv")
    return {"train": train, "dev": dev}


@pytest.fixture(scope="session")
def trained_head(tmp_path_factory, encoders, pair_sets):
    """A head version folder trained on the drawn pairs with the real bundled encoders."""
    from core.build_head import build_head
    from core.features import FeatureStore
    from core.training import TrainConfig

    out = tmp_path_factory.mktemp("head") / "version"
    store = FeatureStore(tmp_path_factory.mktemp("store") / "features.sqlite")
    build_head(pair_sets["train"], pair_sets["dev"], pair_sets["train"].parent / "images", out,
               text_spec=encoders[0].spec, image_spec=encoders[1].spec,
               train_config=TrainConfig(max_epochs=40, patience=40), store=store, log=lambda _: None,
               encoders=encoders)
    return out


@pytest.fixture()
def mmsa_home(tmp_path, monkeypatch):
    home = tmp_path / "mmsa_home"
    monkeypatch.setenv("MMSA_HOME", str(home))
    return home


def requires_mvsa():
    return pytest.mark.skipif(not (MVSA / "train.csv").exists(), reason="MVSA-Single not present in ../shared/data")
