"""A head version's card is one typed ``HeadCard``: read and checked once, written back exactly as it was
read, and what it says is what the predictor does (each head divided by its own temperature)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import softmax

from core import config
from core.features.store import FeatureStore
from core.io.labels import HEAD_NAMES
from core.registry import HeadCard, RegistryError, validate_card
from core.scoring.predict import Predictor

from .conftest import IMAGE_DIM, TEXT_DIM, FakeImageEncoder, FakeTextEncoder, fake_card, fake_heads
from .test_registry import make_card

SHIPPED_CARD = config.DEFAULT_HEAD_DIR / "card.json"


@pytest.mark.skipif(not SHIPPED_CARD.exists(), reason="no shipped default")
def test_the_shipped_card_reads_as_typed_fields_and_writes_back_byte_for_byte():
    raw = json.loads(SHIPPED_CARD.read_text())
    card = HeadCard.from_dict(raw)
    assert card.text_encoder.dim == raw["text_encoder"]["dim"] and card.image_encoder.spec == raw["image_encoder"]["spec"]
    assert card.temperature("fused") == raw["temperatures"]["fused"] and card.hidden == raw["hidden"]
    assert card.to_dict() == raw
    assert json.dumps(card.to_dict(), indent=2) == json.dumps(raw, indent=2)  # same fields, same order, same nulls


def test_unknown_fields_survive_and_a_changed_field_stays_in_its_place():
    raw = make_card(parent=None, text_encoder={"spec": "bundled:minilm-l6", "id": "t", "dim": 8, "pooling": "mean"})
    card = HeadCard.from_dict(raw)
    assert card.extra == {"custom_field": {"kept": True}} and card.text_encoder.extra == {"pooling": "mean"}
    assert card.parent is None and card.to_dict()["parent"] is None  # a null read stays a null
    assert "note" not in card.to_dict()  # an absent field stays absent

    changed = card.replace(hidden=9, note="retold").to_dict()
    assert list(changed)[: len(raw)] == list(raw) and changed["hidden"] == 9 and list(changed)[-1] == "note"


def test_a_card_is_immutable_and_hands_out_copies():
    card = HeadCard.from_dict(make_card())
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.hidden = 99
    out = card.to_dict()
    out["temperatures"]["fused"] = 99.0
    out["text_encoder"]["dim"] = 1
    assert card.temperature("fused") == 0.9 and card.text_encoder.dim == 8


def test_every_problem_of_a_card_is_named_in_one_error():
    bad = make_card(labels=["pos", "neg"], text_encoder={"spec": "x", "id": "", "dim": "768"}, dropout=3,
                    temperatures={"fused": 0}, training=[1], members=True, parent=5)
    with pytest.raises(RegistryError) as error:
        HeadCard.from_dict(bad)
    message = str(error.value)
    assert message.startswith("invalid card: ")
    for expected in ("labels must be a list of 3 strings", "text_encoder.id must be a non-empty string",
                     "text_encoder.dim must be a positive integer, got '768'", "dropout must be a number in [0, 1)",
                     "temperatures must be an object mapping names to positive numbers",
                     "training must be an object, got list", "members must be an integer from 1 to 64, got True",
                     "parent must be a version string or null, got 5"):
        assert expected in message, expected
    with pytest.raises(RegistryError, match="image_encoder must be an object with spec, id, dim"):
        HeadCard.from_dict(make_card(image_encoder=None))
    with pytest.raises(RegistryError, match="card must be a JSON object, got list"):
        HeadCard.from_dict([1, 2])
    assert validate_card(make_card()) == make_card()  # the dict form, for callers that keep dicts


# --------------------------------------------------------------------------- what the card tells the predictor


def test_the_predictor_divides_each_heads_logits_by_that_heads_temperature_from_the_card():
    """Calibration is the card's: a text head fitted at T=0.5 is sharper, a fused head at T=4 softer, and a
    card without temperatures leaves the logits as they are."""
    text_encoder, image_encoder = FakeTextEncoder(), FakeImageEncoder()
    temperatures = {"text": 0.5, "image": 2.0, "fused": 4.0}
    rng = np.random.default_rng(0)
    text, image = rng.normal(size=(6, TEXT_DIM)).astype(np.float32), rng.normal(size=(6, IMAGE_DIM)).astype(np.float32)
    present = np.ones(6, dtype=bool)
    for card_temperatures in (temperatures, None):
        extra = {} if card_temperatures is None else {"temperatures": card_temperatures}
        predictor = Predictor(text_encoder, image_encoder, fake_heads(3),
                              fake_card(text_encoder, image_encoder, **extra), FeatureStore(None))
        logits = predictor.logits(text, image)
        probs = predictor.probabilities(text, image, present, present)
        for head in HEAD_NAMES:
            t = 1.0 if card_temperatures is None else card_temperatures[head]
            np.testing.assert_allclose(probs[head], softmax(logits[head] / t, axis=1), rtol=1e-6, err_msg=head)
    # The same numbers reach a single pair's answer: its confidence is the fused head's, at T=4.
    predictor = Predictor(text_encoder, image_encoder, fake_heads(3),
                          fake_card(text_encoder, image_encoder, temperatures=temperatures), FeatureStore(None))
    pair = predictor.predict_pair("a lovely day", _png())
    fused_logits = predictor.logits(text_encoder.encode(["a lovely day"]), predictor.image_vector(_png()))["fused"]
    assert pair.source == "fused"
    assert pair.confidence == pytest.approx(float(softmax(fused_logits[0] / 4.0).max()), rel=1e-6)


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()
