"""A user with their own kind of post adapts the model from a few hundred labels: the read-out is
written into the heads exactly, posts without pictures teach the text head only, part of the labels
is held out (k-fold for small sets) so the figures are honest, the learning curve says whether more
labels are worth giving, the reference set is kept, and the result saves as a version."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.heads.adaptation import (
    AdaptationConfig,
    Adapter,
    PostSet,
    more_labels_verdict,
    replay_choice_text,
    served_logits,
    versus_parent_verdict,
)
from core.heads.adaptation_readout import fit_readout, head_inputs, head_logits, kept_logits, with_readouts
from core.heads.model import HeadConfig, LateFusionHeads
from core.heads.training import TrainingRefused
from tests.conftest import (
    HIDDEN,
    IMAGE_DIM,
    TEXT_DIM,
    assert_same_weights,
    fake_heads,
    fake_predictor,
    snapshot,
    synthetic_set,
)


def ensemble_heads(members: int = 3, seed: int = 0, text_dim: int = TEXT_DIM) -> LateFusionHeads:
    torch.manual_seed(seed)
    return LateFusionHeads(HeadConfig(text_dim, IMAGE_DIM, HIDDEN, 0.1, members=members)).eval()


def text_posts(n: int, seed: int, labels=None, signal: float = 3.0, text_dim: int = TEXT_DIM) -> PostSet:
    """Posts without pictures whose text features carry the label (``signal`` = how clearly)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels if labels is not None else rng.integers(0, 3, n), dtype=np.int64)
    text = rng.normal(size=(len(labels), text_dim)).astype(np.float32)
    text[np.arange(len(labels)), labels] += signal
    return PostSet(text, np.zeros((len(labels), IMAGE_DIM), np.float32), np.zeros(len(labels), bool), labels)


@pytest.mark.parametrize("members", [1, 3])
def test_a_readout_written_into_the_heads_answers_exactly_what_was_fitted(members):
    parent = fake_heads() if members == 1 else ensemble_heads(members)
    before = snapshot(parent)
    data = synthetic_set(90, seed=4)
    inputs = head_inputs(parent, data.text, data.image)
    kept = kept_logits(parent, inputs)
    readout = fit_readout(inputs["text"], kept["text"], data.labels, C=1.0, parent_scale=10.0)

    model = with_readouts(parent, {"text": readout})

    probe = synthetic_set(40, seed=5)
    probe_inputs = head_inputs(parent, probe.text, probe.image)
    got = head_logits(model, probe_inputs)
    want = readout.logits(probe_inputs["text"], kept_logits(parent, probe_inputs)["text"])
    np.testing.assert_allclose(got["text"], want, atol=1e-4)
    parent_logits = head_logits(parent, probe_inputs)
    for head in ("image", "fused"):  # no read-out: they answer as before, to the last bit
        np.testing.assert_array_equal(got[head], parent_logits[head])
    assert model.tensor_shapes() == parent.tensor_shapes()  # a version of the same shape as its parent
    assert_same_weights(before, snapshot(parent))           # the parent is never changed


def test_posts_without_pictures_teach_the_text_head_and_leave_fused_and_image_as_they_were():
    parent = ensemble_heads()
    adapter = Adapter(parent).fit(text_posts(120, seed=1))
    assert adapter.adapted_heads_ == ["text"]
    assert adapter.protocol_["with_image"] == 0
    for head in ("image", "fused"):
        assert_same_weights(snapshot(parent.heads[head]), snapshot(adapter.model_.heads[head]))
    # The text head now reads these posts: the parent (random) did not.
    assert adapter.evaluation_["after"]["accuracy"] > 0.8 > adapter.evaluation_["before"]["accuracy"]


def test_posts_with_pictures_adapt_the_fused_and_image_heads_too():
    data = synthetic_set(90, seed=3)
    adapter = Adapter(ensemble_heads()).fit(PostSet.from_pairs(data))
    assert adapter.adapted_heads_ == ["fused", "image", "text"]
    assert set(adapter.temperatures_) == {"fused", "image", "text"}


def test_small_sets_are_measured_by_k_fold_and_larger_ones_on_a_stratified_hold_out():
    small = Adapter(ensemble_heads()).fit(text_posts(60, seed=2))
    assert small.protocol_["kind"] == "5-fold"
    assert small.protocol_["n_measured"] == 60  # every label measured once, by a fit that did not see it

    labels = np.repeat([0, 1, 2], [40, 80, 80])
    large = Adapter(ensemble_heads()).fit(text_posts(200, seed=2, labels=labels))
    assert large.protocol_ == {"kind": "held-out", "n_labels": 200, "n_measured": 50, "folds": 1, "with_image": 0}
    assert large.curve_[-1]["labels_used"] == 150


@pytest.mark.parametrize("n, protocol", [(100, "5-fold"), (200, "held-out")])
def test_held_out_labels_are_never_learned_from(n, protocol):
    # Labels with no relation to the features: a read-out that saw the measured posts would fit them
    # (weakly regularised over 400 dimensions, it remembers 200 random labels); one that did not is at chance.
    posts = text_posts(n, seed=6, signal=0.0, text_dim=400)
    adapter = Adapter(ensemble_heads(text_dim=400), AdaptationConfig(C=100.0)).fit(posts)
    assert adapter.protocol_["kind"] == protocol
    _, served = served_logits(adapter.model_, posts)
    assert (served.argmax(1) == posts.labels).mean() > 0.9   # it did learn what it was given ...
    assert adapter.evaluation_["after"]["accuracy"] < 0.45   # ... and the held-out figure does not show it


def test_the_learning_curve_counts_the_labels_used_and_rises_with_them():
    adapter = Adapter(ensemble_heads()).fit(text_posts(400, seed=8, signal=1.0))
    curve = adapter.curve_
    assert [p["labels_used"] for p in curve] == [75, 150, 300]
    assert all(p["n"] == 100 and p["low"] <= p["accuracy"] <= p["high"] for p in curve)
    assert curve[-1]["accuracy"] >= curve[0]["accuracy"]
    assert curve[-1]["accuracy"] == adapter.evaluation_["after"]["accuracy"]
    assert adapter.verdict_["answer"] in {"yes", "little", "unclear"}


def test_each_point_of_the_learning_curve_learns_from_only_the_labels_it_counts():
    # Many dimensions, a clear signal: 75 labels are too few to find it, 300 are enough.
    adapter = Adapter(ensemble_heads(text_dim=400), AdaptationConfig(C=1.0)).fit(
        text_posts(400, seed=8, signal=2.0, text_dim=400))
    accuracies = [p["accuracy"] for p in adapter.curve_]
    assert accuracies[0] + 0.1 < accuracies[1] < accuracies[2] - 0.05
    assert adapter.verdict_["answer"] == "yes"  # still rising at its last step: more labels are worth giving


def _curve(previous: np.ndarray, last: np.ndarray) -> list[dict]:
    return [{"labels_used": 100.0, "_correct": previous}, {"labels_used": 200.0, "_correct": last}]


def test_more_labels_are_worth_giving_while_the_last_step_still_gains():
    n = 400
    previous = np.arange(n) < 240                      # 60 %
    gaining = previous | (np.arange(n) >= 340)         # 75 %: +15 points for 100 more labels
    verdict = more_labels_verdict(_curve(previous, gaining))
    assert verdict["answer"] == "yes" and verdict["low"] > 0
    assert verdict["per_100_labels"] == pytest.approx(0.15)
    assert more_labels_verdict(_curve(previous, previous))["answer"] == "little"
    few = np.arange(20) < 10
    assert more_labels_verdict(_curve(few, few | (np.arange(20) == 19)))["answer"] == "unclear"


def test_the_user_is_told_whether_the_adaptation_beats_the_version_it_adapts_on_their_posts():
    n = 400
    parent = np.arange(n) < 200                        # the version it adapts: 50 %
    assert versus_parent_verdict(parent, parent | (np.arange(n) >= 340))["answer"] == "better"  # +15 points
    worse = versus_parent_verdict(parent, parent & (np.arange(n) >= 60))                       # -15 points
    assert worse["answer"] == "worse" and worse["high"] < 0 and "Worse on your posts" in worse["message"]
    slightly = parent.copy()
    slightly[200:206], slightly[:2] = True, False                                               # +1 point: 6 won, 2 lost
    level = versus_parent_verdict(parent, slightly)
    assert level["answer"] == "unclear" and level["low"] < 0 < level["gain"] and "Not clearly better" in level["message"]
    assert versus_parent_verdict(parent, parent.copy())["answer"] == "same"
    # End to end: a parent that never saw the user's kind of post, labels that carry it.
    adapter = Adapter(ensemble_heads()).fit(text_posts(200, seed=3, signal=2.0))
    assert adapter.vs_parent_["answer"] == "better"
    assert adapter.vs_parent_["gain"] == pytest.approx(adapter.evaluation_["after"]["accuracy"] -
                                                       adapter.evaluation_["before"]["accuracy"])


@pytest.mark.parametrize("labels, message", [
    (np.repeat([0, 2], 5), "at least 20"),
    (np.full(30, 2), "two different labels"),
    (np.array([0] + [1] * 15 + [2] * 14), "appear only once"),
])
def test_sets_that_cannot_be_measured_honestly_are_refused_with_the_reason(labels, message):
    with pytest.raises(TrainingRefused, match=message):
        Adapter(ensemble_heads()).fit(text_posts(len(labels), seed=1, labels=labels))


def test_replayed_reference_pairs_keep_the_reference_while_the_head_learns_another_kind_of_post():
    from core.heads.training import TrainConfig, train_heads

    reference = synthetic_set(300, seed=10)
    parent = train_heads(synthetic_set(150, seed=12), synthetic_set(60, seed=13),
                         TrainConfig(hidden=HIDDEN, members=3, dropout=0.1, lr=1e-2, max_epochs=40, patience=40)).model
    replay, check = reference.subset(np.arange(150)), reference.subset(np.arange(150, 300))
    # The user's posts carry their label in other dimensions than the reference's.
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 120)
    text = rng.normal(size=(120, TEXT_DIM)).astype(np.float32)
    text[np.arange(120), 3 + labels] += 3.0
    user = PostSet(text, np.zeros((120, IMAGE_DIM), np.float32), np.zeros(120, bool), labels)

    alone = Adapter(parent).fit(user, replay=replay, check=check)  # no pictures: the text head is not held
    replayed = Adapter(parent, AdaptationConfig(text_replay_weight=1.0)).fit(user, replay=replay, check=check)
    assert alone.reference_["before"]["text"] > 0.9
    assert replayed.reference_["after"]["text"] > alone.reference_["after"]["text"] + 0.1
    assert replayed.reference_["after"]["text"] > replayed.reference_["before"]["text"] - 0.05
    # ... it still learned the user's posts, a little less than without the reference: the trade-off.
    before, after = replayed.evaluation_["before"]["accuracy"], replayed.evaluation_["after"]["accuracy"]
    assert before < after <= alone.evaluation_["after"]["accuracy"]
    assert replayed.reference_["after"]["fused"] == replayed.reference_["before"]["fused"]  # no pictures


def test_an_adaptation_from_a_text_only_table_saves_as_a_version_that_loads_and_answers_the_same(tmp_path):
    from core.heads.adaptation_run import adapted_card, run_adaptation
    from core.io.tables import prepare_pairs
    from core.registry import HeadRegistry, write_version_folder
    from core.scoring.predict import heads_from_card
    from tests.conftest import fake_card

    predictor = fake_predictor()
    predictor.card = fake_card(version="parent-1", temperatures={"text": 1.5, "image": 1.0, "fused": 1.2})
    words = {"negative": "awful", "neutral": "meeting", "positive": "lovely"}
    frame = pd.DataFrame([{"text": f"{words[label]} post {k}", "label": label}
                          for k in range(12) for label in words] + [{"text": "", "label": "positive"}])
    rows = prepare_pairs(frame, image_column=None, label_column="label")
    steps = []
    run = run_adaptation(predictor, rows, None, None, on_step=lambda message, done: steps.append(done))
    assert run.labelled.problems == ["row 38: row has neither text nor an image"]
    assert len(run.labelled.posts) == 36 and steps[0] == 0.0 and steps[-1] == 1.0

    card = adapted_card(predictor.card, run, base_version="parent-1")
    builtin = tmp_path / "builtin"
    write_version_folder(builtin, predictor.heads.tensors(), fake_card(version="shipped"))
    registry = HeadRegistry(tmp_path / "heads", builtin=builtin)
    version = registry.save(run.adapter.model_.tensors(), card, note="our posts", parent="parent-1")

    tensors, saved = registry.load(version)
    assert saved.parent == "parent-1" and saved.training["kind"] == "adaptation"
    assert saved.training["n_labels"] == 36 and saved.training["adapted_heads"] == ["text"]
    held_out = saved.training["held_out"]
    assert held_out["protocol"]["kind"] == "5-fold" and held_out["after"]["n"] == 36
    assert held_out["vs_parent"]["answer"] in {"better", "worse", "unclear", "same"}
    assert len(saved.training["learning_curve"]) == 3
    assert saved.temperatures["fused"] == 1.2 and saved.temperatures["text"] != 1.5
    posts = run.labelled.posts
    np.testing.assert_allclose(served_logits(heads_from_card(tensors, saved), posts)[1],
                               served_logits(run.adapter.model_, posts)[1], atol=1e-5)
    assert predictor.heads is not run.adapter.model_


def test_a_label_the_user_never_gave_is_learned_from_the_reference_and_refused_without_one():
    reference = synthetic_set(90, seed=14)
    user = text_posts(60, seed=15, labels=np.repeat([0, 2], 30))  # no neutral post at all
    adapter = Adapter(ensemble_heads()).fit(user, replay=reference)
    _, served = served_logits(adapter.model_, PostSet.from_pairs(reference))
    assert 1 in served.argmax(1)  # it can still say neutral
    with pytest.raises(TrainingRefused, match="every label"):
        Adapter(ensemble_heads()).fit(user)


def test_with_pictures_the_reference_is_replayed_only_as_much_as_keeps_its_fused_answers():
    from core.heads.adaptation import GUARD_DROP, REPLAY_LADDER
    from core.heads.training import TrainConfig, train_heads

    parent = train_heads(synthetic_set(150, seed=12), synthetic_set(60, seed=13),
                         TrainConfig(hidden=HIDDEN, members=3, dropout=0.1, lr=1e-2, max_epochs=40, patience=40)).model
    reference = synthetic_set(240, seed=16)
    pairs = synthetic_set(90, seed=17)
    config = AdaptationConfig(C=0.1)  # a few synthetic dimensions need less shrinking than 1,152 real ones
    agreeing = Adapter(parent, config).fit(PostSet.from_pairs(pairs), replay=reference)
    assert agreeing.replay_weight_ == REPLAY_LADDER[0] and len(agreeing.replay_choice_) == 1

    # The same kind of post under another rule: learning it costs the reference, so more is replayed.
    contrary = PostSet.from_pairs(pairs)
    contrary.labels = (pairs.labels + 1) % 3
    adapter = Adapter(parent, config).fit(contrary, replay=reference)
    tried = adapter.replay_choice_
    assert len(tried) > 1 and adapter.replay_weight_ == tried[-1]["weight"]
    assert all(t["fused_before"] - t["fused_after"] > GUARD_DROP for t in tried[:-1])
    assert tried[-1]["fused_before"] - tried[-1]["fused_after"] <= GUARD_DROP or \
        adapter.replay_weight_ == REPLAY_LADDER[-1]
    # Every replayed pair guards (by a fit that replayed the others), not a small slice of them.
    parent_fused = served_logits(parent, PostSet.from_pairs(reference))[0]["fused"].argmax(1) == reference.labels
    assert all(t["guard_n"] == len(reference) and t["fused_before"] == pytest.approx(parent_fused.mean())
               for t in tried)
    # ... and no guard fit replayed the pairs it is measured on: the folds each leave out a third, together all.
    replayed_sets = []
    spy = Adapter(parent, config)
    real = spy._replay_data
    spy._replay_data = lambda pairs: (replayed_sets.append({r.tobytes() for r in pairs.text}), real(pairs))[1]
    spy.fit(contrary, replay=reference)
    everything = {r.tobytes() for r in reference.text}
    left_out = [everything - rows for rows in replayed_sets if rows != everything]
    assert len(left_out) == 3 and set().union(*left_out) == everything
    assert sum(len(rows) for rows in left_out) == len(everything)
    said = replay_choice_text(adapter.replay_weight_, tried)
    assert f"weight {adapter.replay_weight_:g}" in said and f"{len(reference)} replayed pairs" in said
    assert replay_choice_text(0.7, []) == ""

    fixed = Adapter(parent, AdaptationConfig(C=0.1, replay_weight=0.7)).fit(contrary, replay=reference)
    assert fixed.replay_weight_ == 0.7 and fixed.replay_choice_ == []
    assert Adapter(parent).fit(text_posts(60, seed=1), replay=reference).replay_choice_ == []  # no pictures
