"""Shared fixtures and helpers: real bundled encoders (loaded once), small pair sets drawn with
Pillow and a head trained on them; the AppTest set-up of the page suites; light fake encoders and
synthetic feature sets for the bookkeeping stories (reliability, concurrent sessions). Nothing here
reads ../shared/data."""
from __future__ import annotations

import hashlib
import os
import random
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is unreachable here; fail fast, not after retries
# Tests never touch the user's real feature store or head registry.
os.environ["MMSA_HOME"] = tempfile.mkdtemp(prefix="mmsa-tests-")

from core.threads import start_torch_threads

# The test process starts the way the app and the command line do: torch's threads set once, here.
start_torch_threads()

# The real-browser tests' fixtures, for every test module (each gets its own server and tab).
from tests.browser import head_dir, page, server, shots, sync_playwright  # noqa: E402, F401

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
            picture = f"{label}_{seed}_{k}.png"
            draw_image(images / picture, label, seed * 1000 + k + zlib.crc32(label.encode()) % 97)
            rows.append({"id": f"{label}-{seed}-{k}", "text": f"{options[k % len(options)]} #{k}",
                         "image": picture, "label": label})
    csv = folder / name
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


# Rows a scorer must mark as errors (or score text-only) without stopping; the picture broken.jpg is
# written by ``with_bad_rows``.
BAD_ROWS = [
    {"id": "bad-image", "text": "nice", "image": "broken.jpg", "label": "positive"},
    {"id": "escape", "text": "sneaky", "image": "../../etc/passwd", "label": "negative"},
    {"id": "missing", "text": "where is it", "image": "nope.png", "label": "neutral"},
    {"id": "text-only", "text": "I love it", "image": "", "label": "positive"},
    {"id": "bad-label", "text": "hmm", "image": "", "label": "maybe"},
]


def with_bad_rows(csv: Path, *more: dict) -> pd.DataFrame:
    """The pairs of ``csv`` (as strings) followed by BAD_ROWS and ``more``; writes the broken picture."""
    (csv.parent / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return pd.concat([frame, pd.DataFrame([*BAD_ROWS, *more])], ignore_index=True)


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
    from core.features.store import FeatureStore
    from core.heads.recipe import build_head
    from core.heads.training import TrainConfig

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


# --------------------------------------------------------------------------- AppTest set-up

STREAMLIT_APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
APP_TIMEOUT = 60  # the first run of a process loads the encoders


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, trained_head):
    """Points the app at its own MMSA_HOME, at the fixture head (MMSA_HEAD_DIR) instead of the shipped
    default, and at a missing MVSA folder so the correction page uses the project's example pairs as
    its reference set."""
    home = tmp_path_factory.mktemp("app_home")
    data_root = tmp_path_factory.mktemp("data_root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMSA_HOME", str(home))
        patch.setenv("MMSA_HEAD_DIR", str(trained_head))
        patch.setenv("MMSA_MVSA_DIR", str(home / "no-mvsa-here"))
        patch.setenv("MMSA_DATA_ROOT", str(data_root))
        yield {"home": home, "data_root": data_root, "head": trained_head}


def new_app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(STREAMLIT_APP), default_timeout=APP_TIMEOUT)


def open_page(name: str):
    at = new_app().run()
    assert not at.exception, at.exception
    if name != "home":
        at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, at.exception
    return at


def button(at, key: str):
    return next(b for b in at.button if b.key == key)


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "title",
                                  "subheader") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# --------------------------------------------------------------------------- light fake encoders
# A hash of the text, the mean colour of the picture: for stories about the bookkeeping around the
# encoders (resumable batches, crashes mid-training, sessions sharing one Engine).

TEXT_DIM, IMAGE_DIM, HIDDEN = 8, 6, 16


class SimulatedCrash(RuntimeError):
    pass


def _vector(seed_bytes: bytes, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(seed_bytes).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


class FakeTextEncoder:
    """A deterministic vector per text; counts every text it is asked to encode. ``fail_on_call=k``
    raises on its k-th call (a crash of the machine or a bug in the middle of a batch)."""

    def __init__(self, fail_on_call: int | None = None, id: str = "text:fake:1", dim: int = TEXT_DIM):
        self.id, self.dim, self.max_tokens = id, dim, 12
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.seen: Counter = Counter()

    @property
    def feature_key(self) -> str:  # what the feature store files its vectors under
        return self.id

    def describe(self) -> str:
        return "fake-text"

    def encode(self, texts):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise SimulatedCrash(f"text encoder died on call {self.calls}")
        self.seen.update(texts)
        return np.stack([_vector(t.encode(), self.dim) for t in texts])

    def truncated(self, texts):
        return [len(t.split()) > self.max_tokens for t in texts]


class FakeImageEncoder:
    """Mean colour plus a hash of the pixels; counts every picture (by its pixels) it encodes."""

    def __init__(self, fail_on_call: int | None = None, id: str = "image:fake:1", dim: int = IMAGE_DIM):
        self.id, self.dim = id, dim
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.seen: Counter = Counter()

    @property
    def feature_key(self) -> str:
        return self.id

    def describe(self) -> str:
        return "fake-image"

    def decode(self, data: bytes):
        from core.io.images import decode_image
        return decode_image(data)

    def encode(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise SimulatedCrash(f"image encoder died on call {self.calls}")
        out = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
            digest = hashlib.sha256(pixels.tobytes()).digest()
            self.seen[digest] += 1
            out.append(np.concatenate([pixels.mean((0, 1)) / 255.0, _vector(digest, self.dim - 3)]))
        return np.stack(out).astype(np.float32)


def fake_card(text_encoder=None, image_encoder=None, **extra) -> dict:
    from core.io.labels import LABELS

    text_encoder = text_encoder or FakeTextEncoder()
    image_encoder = image_encoder or FakeImageEncoder()
    return {"labels": list(LABELS), "hidden": HIDDEN, "dropout": 0.1,
            "text_encoder": {"spec": "fake-text", "id": text_encoder.id, "dim": text_encoder.dim},
            "image_encoder": {"spec": "fake-image", "id": image_encoder.id, "dim": image_encoder.dim},
            **extra}


def fake_heads(seed: int = 0, text_dim: int = TEXT_DIM, image_dim: int = IMAGE_DIM):
    import torch

    from core.heads.model import HeadConfig, LateFusionHeads

    torch.manual_seed(seed)
    return LateFusionHeads(HeadConfig(text_dim, image_dim, HIDDEN, 0.1)).eval()


def fake_predictor(text_encoder=None, image_encoder=None, store=None, seed: int = 0):
    from core.features.store import FeatureStore
    from core.scoring.predict import Predictor

    text_encoder = text_encoder or FakeTextEncoder()
    image_encoder = image_encoder or FakeImageEncoder()
    return Predictor(text_encoder, image_encoder, fake_heads(seed), fake_card(text_encoder, image_encoder),
                     store if store is not None else FeatureStore(None))


def synthetic_set(n: int, seed: int, labels=None):
    """Features whose first dimensions carry the label, so a head can learn something in a few epochs."""
    from core.features.sets import FeatureSet
    from core.io.labels import LABELS

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels if labels is not None else rng.integers(0, len(LABELS), n), dtype=np.int64)
    text = rng.normal(size=(len(labels), TEXT_DIM)).astype(np.float32)
    image = rng.normal(size=(len(labels), IMAGE_DIM)).astype(np.float32)
    text[np.arange(len(labels)), labels] += 3.0
    image[np.arange(len(labels)), labels] += 3.0
    return FeatureSet(text, image, labels)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Ten pairs with distinct texts and pictures, one of them naming a missing image (a bad row)."""
    from core.io.tables import prepare_pairs

    folder = tmp_path_factory.mktemp("table")
    moods = ["positive", "negative", "neutral"]
    records = []
    for k in range(10):
        mood = moods[k % 3]
        name = f"pic_{k}.png"
        draw_image(folder / name, mood, seed=100 + k)
        records.append({"id": f"r{k}", "text": f"{mood} post number {k}", "image": name, "label": mood})
    records[4]["image"] = "missing.png"
    frame = pd.DataFrame(records)
    rows = prepare_pairs(frame, label_column="label", id_column="id", images_root=folder)
    return {"folder": folder, "frame": frame, "rows": rows}


def serve_v1(tmp_path, store):
    """(registry, engine, v1): a registry with a shipped default and an activated version v1 trained
    on synthetic features, served by an Engine over the fake encoders."""
    from app.session import Engine
    from core.heads.training import TrainConfig, train_heads
    from core.registry import HeadRegistry, write_version_folder

    trained = train_heads(synthetic_set(60, 1), synthetic_set(30, 2),
                          TrainConfig(hidden=HIDDEN, members=1, dropout=0.1, max_epochs=5, patience=5)).model
    builtin = tmp_path / "builtin"
    write_version_folder(builtin, fake_heads(99).tensors(), fake_card(version="shipped"))
    registry = HeadRegistry(tmp_path / "heads", builtin=builtin)
    v1 = registry.save(trained.tensors(), fake_card(), note="v1")
    registry.activate(v1)
    return registry, Engine(FakeTextEncoder(), FakeImageEncoder(), store, registry), v1


def snapshot(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} changed"
