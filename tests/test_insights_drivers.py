"""Drivers: an analyst asks why posts are negative and gets the terms that set negative posts apart,
ranked so that rare words do not drown the list; two slices side by side by the same method."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.insights.drivers import find_drivers, slice_drivers, term_matrix, weighted_log_odds
from core.insights.tokens import term_kind, tokenise

WORDS = [f"word{i}" for i in range(400)]


def chatter(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """n posts of ten common words each, with a class drawn at random: no term belongs to any class."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, 10)) for _ in range(n)]
    classes = rng.choice(["negative", "neutral", "positive"], n)
    return texts, classes


def test_a_hashtag_added_to_a_hundred_negative_posts_tops_the_negative_drivers():
    texts, classes = chatter(3000)
    negative = np.flatnonzero(classes == "negative")[:100]
    for i in negative:
        texts[i] += " #Zorbleflap"
    drivers = find_drivers(texts, classes)
    top = drivers.tables["negative"].iloc[0]
    assert top.term == "#zorbleflap" and top.kind == "hashtag"
    assert top.n == 100 and top.n_rest == 0 and top.share == pytest.approx(100 / drivers.sizes["negative"])
    assert set(top.examples) <= set(negative) and len(top.examples) == 3
    assert top.score > 2 * drivers.tables["negative"].iloc[1].score  # far ahead of the chance terms
    assert "#zorbleflap" not in set(drivers.tables["positive"].term) | set(drivers.tables["neutral"].term)
    assert drivers.to_json()["negative"][0] == {"term": "#zorbleflap", "score": round(top.score, 3), "n": 100}


def test_a_word_seen_in_only_a_few_posts_does_not_outrank_a_steady_one():
    texts, classes = chatter(3000, seed=1)
    negative = np.flatnonzero(classes == "negative")
    for i in negative[:3]:
        texts[i] += " gloomword"          # 3 of 3 uses negative: a raw ratio would put it first
    for i in negative[3:63]:
        texts[i] += " refund"             # 60 negative posts ...
    for i in np.flatnonzero(classes == "positive")[:10]:
        texts[i] += " refund"             # ... and 10 elsewhere
    table = find_drivers(texts, classes).tables["negative"]
    assert table.iloc[0].term == "refund"
    assert table.set_index("term").loc["refund", "score"] > table.set_index("term").loc["gloomword", "score"]


def test_the_score_is_monroe_colaresi_and_quinns_z_score_by_hand():
    counts, rest, prior = np.array([30.0, 10.0]), np.array([5.0, 55.0]), np.array([35.0, 65.0])
    a0, n_g, n_r = 100.0, 40.0, 60.0
    delta = (math.log((30 + 35) / (n_g + a0 - 30 - 35)) - math.log((5 + 35) / (n_r + a0 - 5 - 35)))
    z = delta / math.sqrt(1 / (30 + 35) + 1 / (5 + 35))
    assert weighted_log_odds(counts, rest, prior)[0] == pytest.approx(z)


def test_each_labelled_class_has_its_own_drivers_when_the_labels_are_the_groups():
    texts, _ = chatter(900, seed=2)
    labels = np.array(["positive"] * 300 + ["negative"] * 300 + [None] * 300, dtype=object)
    for i in range(300):
        texts[i] += " 😍"
    drivers = find_drivers(texts, labels)
    assert list(drivers.tables) == ["negative", "positive"] and drivers.left_out == 300
    top = drivers.tables["positive"].iloc[0]
    assert (top.term, top.kind, top.n) == ("😍", "emoji", 300)


def test_examples_are_the_posts_with_the_highest_priority():
    texts = ["storm again #fail"] * 5 + ["calm day"] * 5
    classes = ["negative"] * 5 + ["positive"] * 5
    confidence = [0.5, 0.9, 0.7, 0.95, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9]
    table = find_drivers(texts, classes, min_posts=1, example_priority=confidence).tables["negative"]
    assert table.set_index("term").loc["#fail", "examples"] == [3, 1, 2]


def test_two_brands_side_by_side_set_each_apart_with_the_same_method():
    texts, _ = chatter(2000, seed=3)
    brand = np.array(["acme"] * 1000 + ["globex"] * 1000)
    for i in range(100):
        texts[i] += " @acmehelp"
        texts[1000 + i] += " delivery"
    result = slice_drivers(texts, brand == "acme", brand == "globex", names=("acme", "globex"))
    assert result.tables["acme"].iloc[0].term == "@acmehelp"
    assert result.tables["globex"].iloc[0].term == "delivery"
    assert result.sizes == {"acme": 1000, "globex": 1000}


def test_posts_in_both_slices_are_left_out_and_said_so():
    texts = ["a storm", "the storm", "sun"] * 10
    in_a = np.array([True, True, False] * 10)
    in_b = np.array([False, True, True] * 10)
    result = slice_drivers(texts, in_a, in_b, min_posts=1)
    assert result.sizes == {"A": 10, "B": 10} and result.left_out == 10
    assert result.notes == ["10 posts are in both slices and are left out"]


def test_posts_become_words_hashtags_mentions_and_emoji_ignoring_case_and_links():
    text = "Flooded AGAIN!! #Flood @CityHall 😡😡 https://t.co/abc 2 x don’t"
    assert tokenise(text) == ["flooded", "again", "#flood", "@cityhall", "😡", "😡", "don't"]
    assert [term_kind(t) for t in ("#flood", "@cityhall", "😡", "flood")] == ["hashtag", "mention", "emoji", "word"]
    assert tokenise(None) == [] and tokenise(float("nan")) == []
    assert tokenise("RT @bob: rain &amp; wind http… www.x.org/a") == ["@bob", "rain", "wind"]


def test_posts_without_terms_give_empty_tables_not_an_error():
    drivers = find_drivers(["", "!!", None], ["negative", "positive", "negative"])
    assert drivers.terms == 0 and all(t.empty for t in drivers.tables.values())
    matrix, vocabulary = term_matrix([])
    assert matrix.shape == (0, 0) and len(vocabulary) == 0
