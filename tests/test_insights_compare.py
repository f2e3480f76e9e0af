"""Two versions on the same posts: before activating a correction an operator sees how often the new
version agrees with the old one, where they differ, and with labels whether it is right more often
than chance allows. The posts are scored again from the feature store: only the heads run."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import InputError
from core.features.store import FeatureStore
from core.insights.compare import EXACT_BELOW, compare_predictions, mcnemar
from core.insights.features import image_keys, text_keys
from core.insights.rescore import (
    VersionNotFound,
    compare_versions,
    predicted_classes,
    rescore,
    resolve_version,
)
from core.io.tables import PairRow
from core.registry import HeadRegistry, write_version_folder
from core.scoring.batch import score_chunk
from tests.conftest import FakeImageEncoder, FakeTextEncoder, draw_image, fake_card, fake_heads, fake_predictor


def test_two_versions_that_differ_on_known_rows_are_counted_exactly():
    a = ["negative", "neutral", "positive", "positive", "negative", "neutral", None, "positive"] * 25
    b = list(a)
    changed = {3: "negative", 10: "neutral", 17: "positive", 42: "negative", 99: "neutral"}
    for row, new in changed.items():
        b[row] = new
    b[6] = "positive"                                      # A has no class here: left out, not a change
    result = compare_predictions(a, b)
    assert (result.n, result.changed, result.agree, result.left_out) == (175, 5, 170, 25)
    assert result.changed_rows.tolist() == sorted(changed)
    assert result.matrix == [[50, 0, 0], [0, 49, 1], [2, 2, 71]]  # rows: A's class; columns: B's
    assert result.agreement == pytest.approx(170 / 175)
    assert result.accuracy is None and result.test is None
    assert result.to_json() == {"versions": {"A": "A", "B": "B"}, "n": 175, "agree": round(170 / 175, 6),
                                "changed": 5, "matrix": [[50, 0, 0], [0, 49, 1], [2, 2, 71]],
                                "accuracy": None, "mcnemar_p": None}


def test_with_labels_each_version_s_accuracy_and_mcnemar_on_the_discordant_posts():
    labels = ["positive"] * 100
    a = ["positive"] * 90 + ["negative"] * 10             # A right on 90
    b = ["positive"] * 80 + ["negative"] * 20             # B right on 80: A right, B wrong on rows 80-89
    b[95] = "positive"                                     # … and B right, A wrong on row 95
    result = compare_predictions(a, b, labels, names=("v1", "v2"))
    assert result.accuracy == {"A": 0.90, "B": 0.81} and result.labelled == 100
    assert (result.test.b, result.test.c) == (10, 1)
    # Exact two-sided binomial by hand: 2 · P(X ≤ 1), X ~ Binomial(11, ½) = 2 · (1 + 11) / 2¹¹.
    assert result.test.p == pytest.approx(2 * (1 + 11) / 2 ** 11) and result.test.method == "exact binomial"
    lo, hi = result.accuracy_ci["A"]
    assert lo < 0.90 < hi
    assert result.to_json()["mcnemar_p"] == pytest.approx(24 / 2048)


def test_mcnemar_by_hand_in_both_regimes():
    assert mcnemar(2, 8).p == pytest.approx(2 * (1 + 10 + 45) / 2 ** 10)
    assert mcnemar(5, 5).p == 1.0 and mcnemar(0, 0).p == 1.0
    large = mcnemar(10, 30)                                # 40 ≥ 25: chi-square with continuity correction
    assert large.statistic == pytest.approx((20 - 1) ** 2 / 40)
    assert large.p == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))  # chi-square(1) tail = erfc(√(x/2))
    assert EXACT_BELOW == 25 and mcnemar(12, 12).method == "exact binomial"


def test_unlabelled_and_oddly_spelled_labels():
    result = compare_predictions(["positive", "negative", "neutral"], ["positive", "neutral", "neutral"],
                                 ["pos", None, "bogus"])
    assert result.labelled == 1 and result.accuracy == {"A": 1.0, "B": 1.0}
    none = compare_predictions(["positive"], ["negative"], [None])
    assert none.accuracy is None and none.notes == ["no post has a label: accuracy and the paired test need labels"]


# --------------------------------------------------------------------------- from the feature store

@pytest.fixture()
def scored_posts(tmp_path):
    """Twelve posts scored once with fake encoders (their features are now in the store), and two
    head versions on those encoders saved as a folder and in a registry."""
    store = FeatureStore(tmp_path / "features.sqlite")
    text_encoder, image_encoder = FakeTextEncoder(), FakeImageEncoder()
    moods = ["positive", "negative", "neutral"]
    texts = [f"post number {k} about {moods[k % 3]} things" for k in range(12)]
    texts[5] = ""                                          # an image-only post
    images = [draw_image(tmp_path / f"p{k}.png", moods[k % 3], k) if k % 4 else None for k in range(12)]
    rows = [PairRow(row=k, id=str(k), text=texts[k], image_path=images[k], label=moods[k % 3]) for k in range(12)]
    first = fake_predictor(text_encoder, image_encoder, store, seed=1)
    scored = score_chunk(rows, first)
    registry = HeadRegistry(tmp_path / "registry")
    v1 = registry.save(first.heads.tensors(), fake_card(text_encoder, image_encoder), note="v1")
    folder = tmp_path / "v2"
    write_version_folder(folder, fake_heads(seed=2).tensors(), fake_card(text_encoder, image_encoder))
    calls = (text_encoder.calls, image_encoder.calls)
    return {"store": store, "texts": texts, "images": images, "scored": scored, "registry": registry, "v1": v1,
            "v2": str(folder), "labels": [moods[k % 3] for k in range(12)], "encoders": (text_encoder, image_encoder),
            "calls": calls}


def test_a_version_scored_again_from_the_store_gives_the_classes_of_the_run(scored_posts):
    version = resolve_version(scored_posts["v1"], scored_posts["registry"])
    again = rescore([version], scored_posts["store"], scored_posts["texts"], scored_posts["images"])
    assert again.classes[version.name].tolist() == scored_posts["scored"]["prediction"].tolist()
    assert not again.missing.any()
    assert (scored_posts["encoders"][0].calls, scored_posts["encoders"][1].calls) == scored_posts["calls"]


def test_compare_a_registry_version_with_a_version_folder_without_encoding(scored_posts):
    p = scored_posts
    comparison, rescored = compare_versions(p["v1"], p["v2"], p["store"], p["texts"], p["images"], p["labels"],
                                            registry=p["registry"])
    # The same numbers as scoring with each version's full predictor.
    text_encoder, image_encoder = p["encoders"]
    second = fake_predictor(text_encoder, image_encoder, p["store"], seed=2)
    probs = second.probabilities(*_features(p, text_encoder, image_encoder))
    expected_b = predicted_classes(probs).tolist()
    assert rescored.classes[p["v2"]].tolist() == expected_b
    direct = compare_predictions(p["scored"]["prediction"].tolist(), expected_b, p["labels"])
    assert (comparison.n, comparison.changed, comparison.matrix) == (12, direct.changed, direct.matrix)
    assert comparison.accuracy == direct.accuracy and comparison.test == direct.test
    assert comparison.names == (p["v1"], p["v2"])


def _features(p, text_encoder, image_encoder):
    from core.features.pipeline import encode_pairs

    rows = [type("Row", (), {"text": t, "image_path": i, "error": None, "warnings": []})()
            for t, i in zip(p["texts"], p["images"])]
    encoded = encode_pairs(rows, text_encoder, image_encoder, p["store"])
    return encoded.text, encoded.image, encoded.has_text, encoded.has_image


def test_posts_whose_features_left_the_store_are_left_out_and_counted(scored_posts, tmp_path):
    p = scored_posts
    fresh = FeatureStore(tmp_path / "other.sqlite")
    some = text_keys(p["texts"])
    vectors = p["store"].get_many("text:fake:1", [k for k in some if k])
    fresh.put_many("text:fake:1", list(vectors), np.stack(list(vectors.values())))  # texts only, no pictures
    comparison, rescored = compare_versions(p["v1"], p["v2"], fresh, p["texts"], p["images"],
                                            registry=p["registry"])
    with_image = sum(i is not None for i in p["images"])
    assert int(rescored.missing.sum()) == with_image and comparison.n == 12 - with_image
    assert comparison.notes[0].startswith(f"{with_image} posts' features are not in the feature store")


def test_posts_scored_on_a_gpu_under_autocast_are_compared_from_the_vectors_they_stored(scored_posts, tmp_path):
    # A GPU scoring under bf16 autocast files its vectors under the encoders' ids + ":autocast-bf16".
    p = scored_posts
    text_encoder, image_encoder = p["encoders"]
    on_gpu = FeatureStore(tmp_path / "gpu.sqlite")
    for encoder_id, keys in ((text_encoder.id, text_keys(p["texts"])), (image_encoder.id, image_keys(p["images"]))):
        vectors = p["store"].get_many(encoder_id, [k for k in keys if k])
        on_gpu.put_many(f"{encoder_id}:autocast-bf16", list(vectors), np.stack(list(vectors.values())))
    version = resolve_version(p["v1"], p["registry"])
    again = rescore([version], on_gpu, p["texts"], p["images"])
    assert not again.missing.any()
    assert again.classes[version.name].tolist() == p["scored"]["prediction"].tolist()
    assert any(note.startswith("11 posts' text features computed under bf16 autocast") for note in again.notes)
    with_image = sum(i is not None for i in p["images"])
    assert any(note.startswith(f"{with_image} posts' image features computed under bf16 autocast") for note in again.notes)


def test_the_same_version_twice_or_an_unknown_one_is_refused(scored_posts):
    p = scored_posts
    with pytest.raises(InputError, match="name two different versions"):
        compare_versions(p["v1"], p["v1"], p["store"], p["texts"], registry=p["registry"])
    with pytest.raises(VersionNotFound, match="no-such-version"):
        resolve_version("no-such-version", p["registry"])
    with pytest.raises(VersionNotFound, match="is not a head version folder"):
        resolve_version(str(p["store"].path.parent / "nowhere" / "v9"), p["registry"])
