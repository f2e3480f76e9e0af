"""A live correction fixes the pairs it is given without breaking the rest (core level, no browser).

The promised figure: 20 labelled pairs that the active head gets wrong; after the
correction at least 18 of them are right, and the fused head's accuracy on held-out reference pairs
drops by no more than 1 point. Here the head is the fixture trained on drawn pairs; the MVSA version
of the same measurement runs when MVSA-Single and the shipped default head are present.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.heads.correction import CorrectionConfig
from core.heads.correction_set import (
    CorrectionItem,
    CorrectionSet,
    corrected_card,
    features_for,
    items_from_rows,
    run_correction,
)
from core.heads.training import TrainingRefused
from core.io.tables import prepare_pairs, read_table

from .conftest import MVSA, make_pair_set

# Praise in slang that borrows negative words: a head trained on ordinary wording reads these as
# complaints, and a user whose posts talk like this corrects them to positive.
SLANG_PRAISE = ["this new track is sick", "that trick was wicked", "killer price on these shoes",
                "the bass on this is filthy", "that goal was nasty", "my new ride is a beast",
                "this burger is stupid good", "the crowd went mental tonight",
                "she absolutely murdered that solo", "these beats slap so hard"]


def striped_image(seed: int) -> bytes:
    """A style the fixture head never saw: magenta with diagonal stripes."""
    import io
    rng = random.Random(seed)
    image = Image.new("RGB", (96, 72), (200 + rng.randint(-20, 20), 40, 200 + rng.randint(-20, 20)))
    draw = ImageDraw.Draw(image)
    for x in range(-72, 96, 12):
        draw.line([x, 0, x + 72, 72], fill=(250, 250, 250), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def predictor(trained_head, encoders):
    from core.features.store import FeatureStore
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor

    tensors, card = read_version_folder(trained_head)
    return Predictor.from_card(tensors, card, FeatureStore(None), encoders=encoders)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, predictor, pair_sets):
    """(replay, check): replay = the head's training pairs plus 60 more drawn ones; check = 150 fresh
    drawn pairs held out (one pair is 0.67 points, so the 1-point bar allows at most one more error)."""
    from core.features.sets import concat_sets
    from core.heads.recipe import load_labelled_set

    replay_csv = make_pair_set(tmp_path_factory.mktemp("replay"), n_per_class=20, seed=8)
    check_csv = make_pair_set(tmp_path_factory.mktemp("reference"), n_per_class=50, seed=7)
    load = lambda csv: load_labelled_set(csv, csv.parent / "images", predictor.text_encoder,  # noqa: E731
                                         predictor.image_encoder, predictor.store).features
    return concat_sets(load(pair_sets["train"]), load(replay_csv)), load(check_csv)


def wrong_corrections(predictor, n: int = 20) -> list[CorrectionItem]:
    """Slang praise over a new picture style, labelled positive; keep those the head gets wrong."""
    wrong = []
    for k in range(60):
        text = f"{SLANG_PRAISE[k % len(SLANG_PRAISE)]} #{k}"
        image = striped_image(k)
        if predictor.predict_pair(text, image).label != "positive":
            wrong.append(CorrectionItem(text, image, "positive", f"striped_{k}.png", "test"))
        if len(wrong) == n:
            break
    return wrong


def test_correction_fixes_twenty_wrong_pairs_and_keeps_the_reference(predictor, reference, capsys):
    replay, check = reference
    items = wrong_corrections(predictor)
    assert len(items) == 20, "the fixture head should get at least 20 of these pairs wrong"
    base_state = {k: v.clone() for k, v in predictor.heads.state_dict().items()}

    run = run_correction(predictor, items, replay, check, CorrectionConfig())

    # Measured here, apart from the run's own bookkeeping: the fused verdicts of the base heads and of
    # the corrected copy on the corrected pairs and on the held-out reference pairs.
    data = features_for(items, predictor)
    before, after = fused_labels(predictor.heads, data), fused_labels(run.model, data)
    fixed = [k for k, item in enumerate(items) if before[k] != item.label and after[k] == item.label]
    assert len(fixed) >= 18, run.pairs
    assert run.pairs["before"].tolist() == before and run.pairs["after"].tolist() == after
    assert run.right_after == sum(label == "positive" for label in after)
    reference_before, reference_after = fused_accuracy(predictor.heads, check), fused_accuracy(run.model, check)
    assert run.reference_before["fused"] == pytest.approx(reference_before)
    assert run.reference_after["fused"] == pytest.approx(reference_after)
    drop = reference_before - reference_after
    assert drop <= 0.01, f"fused reference accuracy fell {drop:.1%}"
    assert run.right_after >= 18, run.pairs
    # The predictor other sessions use is untouched until a version is saved and activated.
    assert all(torch_equal(v, predictor.heads.state_dict()[k]) for k, v in base_state.items())
    with capsys.disabled():
        print(f"\n[correction figure, fixture head] right {run.right_before}/20 -> {run.right_after}/20; "
              f"fused reference accuracy {run.reference_before['fused']:.1%} -> {run.reference_after['fused']:.1%} "
              f"on {run.n_reference} pairs; {len(run.history)} epochs, {run.seconds:.1f}s")

    card = corrected_card(predictor.card, run, reference_name="drawn pairs", base_version="fixture")
    assert card.training["right_after"] == run.right_after
    assert card.metrics["reference"]["fused"]["accuracy"] == pytest.approx(run.reference_after["fused"])


def fused_labels(model, data) -> list[str]:
    from core.heads.training import predict_logits
    from core.io.labels import LABELS

    return [LABELS[k] for k in predict_logits(model, data)["fused"].argmax(1)]


def fused_accuracy(model, data) -> float:
    from core.heads.training import predict_logits

    return float((predict_logits(model, data)["fused"].argmax(1) == data.labels).mean())


def torch_equal(a, b) -> bool:
    import torch
    return bool(torch.equal(a, b))


def test_correction_set_deduplicates_and_refuses_empty(predictor):
    image = striped_image(1)
    items = CorrectionSet()
    assert items.add(CorrectionItem("oh great", image, "negative"))
    assert not items.add(CorrectionItem("oh great", image, "pos"))  # same pair: label updated, not duplicated
    assert len(items) == 1 and items.items[0].label == "positive"
    assert items.label_counts()["positive"] == 1
    with pytest.raises(ValueError):
        CorrectionItem("", image, "negative")
    with pytest.raises(TrainingRefused):
        run_correction(predictor, [], None, None)


def test_items_from_rows_lists_bad_rows(tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=1, seed=3)
    frame = read_table(csv)
    frame.loc[len(frame)] = {"id": "x", "text": "no picture here", "image": "", "label": "positive"}
    frame.loc[len(frame)] = {"id": "y", "text": "bad label", "image": frame.loc[0, "image"], "label": "maybe"}
    rows = prepare_pairs(frame, label_column="label", images_root=tmp_path / "images")
    items, problems = items_from_rows(rows, "upload")
    assert len(items) == 3
    assert len(problems) == 2 and "both a text and an image" in problems[0] and "unknown label" in problems[1]


DEFAULT_HEAD = Path(__file__).resolve().parents[1] / "assets" / "models" / "default"


FIGURE_STORE = os.environ.get("MMSA_FIGURE_STORE")


@pytest.mark.skipif(not (MVSA / "dev.csv").exists() or not (DEFAULT_HEAD / "card.json").exists()
                    or not FIGURE_STORE,
                    reason="needs MVSA-Single, the shipped default head and MMSA_FIGURE_STORE (a feature store "
                           "path: the first run encodes all of MVSA train + dev into it)")
def test_correction_on_mvsa_with_the_default_head(capsys):
    """The README figure: 20 MVSA dev pairs the shipped head gets wrong, replaying train pairs; the
    reference is the rest of dev. Opt-in because it encodes ~4,000 pairs the first time:
    ``MMSA_FIGURE_STORE=~/.cache/mmsa/features.sqlite pytest -q tests/test_correction.py -s``."""
    from core.features.store import FeatureStore
    from core.heads.correction import correct_heads
    from core.heads.recipe import load_labelled_set
    from core.heads.training import predict_logits
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor

    tensors, card = read_version_folder(DEFAULT_HEAD)
    store = FeatureStore(Path(FIGURE_STORE).expanduser())
    pred = Predictor.from_card(tensors, card, store)  # the encoders the card names (MiniLM + its LoRA adapter)
    load = lambda name: load_labelled_set(MVSA / name, MVSA / "images", pred.text_encoder,  # noqa: E731
                                          pred.image_encoder, store).features
    dev, train = load("dev.csv"), load("train.csv")
    fused = predict_logits(pred.heads, dev)["fused"].argmax(1)
    wrong = np.flatnonzero(fused != dev.labels)[:20]
    keep = np.setdiff1d(np.arange(len(dev)), wrong)
    corrections, check = dev.subset(wrong), dev.subset(keep)
    acc = lambda model, data: float((predict_logits(model, data)["fused"].argmax(1) == data.labels).mean())  # noqa: E731
    before = acc(pred.heads, check)
    result = correct_heads(pred.heads, corrections, train, CorrectionConfig())
    right_after = int((predict_logits(result.model, corrections)["fused"].argmax(1) == corrections.labels).sum())
    after = acc(result.model, check)
    with capsys.disabled():
        print(f"\n[correction figure, MVSA] right 0/20 -> {right_after}/20; fused accuracy on the other "
              f"{len(check)} dev pairs {before:.1%} -> {after:.1%}; {len(result.history)} epochs")
    assert right_after >= 18
    assert before - after <= 0.01


def test_replayed_pairs_are_held_to_what_the_head_said_and_corrections_to_the_user(predictor, reference):
    """The correction keeps the head saying what it said on the replayed pairs (its own probabilities,
    not their labels, which a head that fits its training pairs barely feels), and learns the user's label."""
    from core.features.sets import concat_sets
    from core.heads.calibration import apply_temperature
    from core.heads.correction import _correction_targets
    from core.heads.training import predict_logits
    from core.io.labels import LABELS

    replay, _ = reference
    corrections = features_for(wrong_corrections(predictor, n=3), predictor)
    data = concat_sets(corrections, replay)
    targets = _correction_targets(predictor.heads, data, len(corrections), "base")
    said = predict_logits(predictor.heads, replay)
    for name in ("text", "image", "fused"):
        assert targets[name][:3].argmax(1).tolist() == [LABELS.index("positive")] * 3
        assert targets[name][:3].max(1).values.tolist() == [1.0] * 3
        np.testing.assert_allclose(targets[name][3:].numpy(), apply_temperature(said[name], 1.0), atol=1e-5)
    labels_only = _correction_targets(predictor.heads, data, len(corrections), "labels")["fused"]
    assert labels_only.argmax(1).tolist() == data.labels.tolist()


def test_a_heavier_correction_weight_pulls_the_head_harder_towards_the_users_labels():
    """The same correction with the user's pairs weighted 8 rather than 1: after the same epochs the head
    gives the user's labels more probability on those pairs, and keeps less of what it said on the replayed
    ones (the weight trades one against the other)."""
    from core.heads.calibration import apply_temperature
    from core.heads.correction import correct_heads
    from core.heads.training import predict_logits

    from .conftest import fake_heads, synthetic_set

    base = fake_heads(seed=3)
    # Features that say one class, labelled by the user as the next one: the head must be pulled.
    said = synthetic_set(6, 11)
    corrections = synthetic_set(6, 11, labels=(said.labels + 1) % 3)
    replay = synthetic_set(80, 12)

    def corrected(weight: float):
        config = CorrectionConfig(lr=1e-2, epochs=4, correction_weight=weight, stop_at_accuracy=2.0)  # never early
        model = correct_heads(base, corrections, replay, config).model
        user = apply_temperature(predict_logits(model, corrections)["fused"], 1.0)
        kept = apply_temperature(predict_logits(model, replay)["fused"], 1.0)
        base_said = apply_temperature(predict_logits(base, replay)["fused"], 1.0)
        return (user[np.arange(len(corrections)), corrections.labels].mean(), np.abs(kept - base_said).mean())

    light, heavy = corrected(1.0), corrected(8.0)
    assert corrected(1.0) == light  # the runs are reproducible: the difference below is the weight's
    assert heavy[0] > light[0] + 0.05
    assert heavy[1] > light[1]
