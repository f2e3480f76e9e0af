"""Saved runs with effects planted for the drivers, themes and version-comparison stories: a made-up
hashtag in a hundred negative posts, posts on six topics with one post copied many times (their text
features put in the feature store, as scoring would have), and two head versions whose classes differ
on known rows. No encoder runs: the vectors and the heads are built by hand."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from core import config
from core.features.store import FeatureStore
from core.insights.features import text_keys
from core.runs import save_run
from tests.conftest import TEXT_DIM, fake_card, fake_heads
from tests.planted import planted_frame

HASHTAG = "#Zorbleflap"
HASHTAG_POSTS = 100
WORDS = [f"word{i}" for i in range(400)]
TOPICS = [["rain", "flood", "storm"], ["beach", "sun", "holiday"], ["coffee", "morning", "cup"],
          ["match", "goal", "team"], ["concert", "music", "band"], ["train", "delay", "station"]]
COPIED = "Our flight got cancelled AGAIN #Skyfail"
COPIES = 80
TEXT_ENCODER = "text:fake:1"   # the id fake_card gives the text encoder


def _scored(frame: pd.DataFrame) -> pd.Series:
    return frame["status"] == "ok"


def hashtag_run(n: int = 1500, seed: int = 0):
    """A run of ``n`` posts of ten common words each (no term belongs to any class), with ``HASHTAG``
    added to ``HASHTAG_POSTS`` negative posts; (run, their row numbers)."""
    frame = planted_frame(n, seed)
    rng = np.random.default_rng(seed)
    ok = _scored(frame)
    frame.loc[ok, "text"] = [" ".join(rng.choice(WORDS, 10)) for _ in range(int(ok.sum()))]
    tagged = frame.index[ok & (frame["prediction"] == "negative")][:HASHTAG_POSTS]
    frame.loc[tagged, "text"] = frame.loc[tagged, "text"] + f" {HASHTAG}!"
    run = save_run(frame, source="chatter.csv", engine="cli", name="chatter", card=fake_card(version="scorer"))
    return run, frame.loc[tagged, "row"].tolist()


def topic_run(n: int = 600, seed: int = 0, dim: int = 32, feature_suffix: str = ""):
    """A run of posts on six topics whose text vectors sit around one centre per topic, with ``COPIES``
    posts holding the same text (one store entry, like a retweeted post); the vectors are put in the
    feature store of MMSA_HOME under the run's text encoder (+ ``feature_suffix``, as a GPU scoring under
    autocast files them). (run, the copies' row numbers)."""
    rng = np.random.default_rng(seed)
    frame = planted_frame(n, seed)
    ok = np.flatnonzero(_scored(frame).to_numpy())
    topic = rng.integers(0, len(TOPICS), len(ok))
    frame.loc[ok, "text"] = [" ".join(rng.choice(TOPICS[t], 3)) + f" post {k}" for k, t in enumerate(topic)]
    copies = ok[:COPIES]
    frame.loc[copies, "text"] = COPIED
    centres = rng.normal(size=(len(TOPICS) + 1, dim))
    vectors = centres[topic] + rng.normal(scale=0.4, size=(len(ok), dim))
    vectors[:COPIES] = centres[-1]                         # the copied post: one text, one vector
    texts = frame.loc[ok, "text"].tolist()
    FeatureStore(config.feature_store_path()).put_many(TEXT_ENCODER + feature_suffix, text_keys(texts),
                                                       vectors.astype(np.float32))
    run = save_run(frame, source="topics.csv", engine="cli", name="topics", card=fake_card(version="scorer"))
    return run, frame.loc[copies, "row"].tolist()


def linear_heads(first_dim: int):
    """Heads whose text head's logits are the text features ``first_dim`` … ``first_dim`` + 2 exactly:
    GELU(x) − GELU(−x) = x, so one hidden layer of [x; −x] passes x through."""
    import torch

    heads = fake_heads()
    first, last = heads.heads["text"][0], heads.heads["text"][3]
    hidden = first.out_features
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        first.weight[:TEXT_DIM] = torch.eye(TEXT_DIM)
        first.weight[TEXT_DIM:2 * TEXT_DIM] = -torch.eye(TEXT_DIM)
        pick = torch.zeros(3, TEXT_DIM)
        pick[torch.arange(3), first_dim + torch.arange(3)] = 1.0
        last.weight.zero_()
        last.bias.zero_()
        last.weight[:, :TEXT_DIM] = pick
        last.weight[:, TEXT_DIM:2 * TEXT_DIM] = -pick
    assert hidden >= 2 * TEXT_DIM
    return heads


# Version B differs from version A on these rows of the run (A's class → B's class), and the labels
# say which one is right there: A is wrong on the six, B on the four.
B_CHANGES = {**{row: ("negative", "positive") for row in (3, 10, 17, 42, 99, 120)},
             **{row: ("positive", "neutral") for row in (5, 60, 77, 150)}}
B_RIGHT, A_RIGHT = 6, 4


def two_version_run(n: int = 200, seed: int = 0, version: str = "A"):
    """A text-only run scored by version A, whose stored text vectors make version A answer the run's
    class and version B the same class except on ``B_CHANGES``; the labels are A's class except on the
    changed rows, where they are positive; ``version`` names the version that scored the run. (run, A's
    tensors, B's tensors, A's class per scored row)."""
    frame = planted_frame(n, seed)
    ok = _scored(frame).to_numpy()
    frame["image"] = None
    for row, (a, _) in B_CHANGES.items():
        frame.loc[row, "prediction"] = a
    classes = frame.loc[ok, "prediction"].tolist()
    frame.loc[ok, "text"] = [f"post {k} " + " ".join(np.random.default_rng(k).choice(WORDS, 5)) for k in range(ok.sum())]
    frame.loc[ok, "label"] = classes
    for row in B_CHANGES:
        frame.loc[row, "label"] = "positive"
    index = {c: k for k, c in enumerate(("negative", "neutral", "positive"))}
    vectors = np.zeros((int(ok.sum()), TEXT_DIM), np.float32)
    for k, a in enumerate(classes):
        b = B_CHANGES.get(k, (a, a))[1]
        vectors[k, index[a]] = 2.0
        vectors[k, 3 + index[b]] = 2.0
    texts = frame.loc[ok, "text"].tolist()
    FeatureStore(config.feature_store_path()).put_many(TEXT_ENCODER, text_keys(texts), vectors)
    run = save_run(frame, source="two versions.csv", engine="cli", name="two versions", card=fake_card(version=version))
    return run, linear_heads(0).tensors(), linear_heads(3).tensors(), classes


def expected_matrix(classes: list[str]) -> list[list[int]]:
    """A's classes against B's, rows A, columns B, in label order, from the planted changes."""
    labels = ("negative", "neutral", "positive")
    pairs = Counter((a, B_CHANGES.get(k, (a, a))[1]) for k, a in enumerate(classes))
    return [[pairs[(a, b)] for b in labels] for a in labels]
