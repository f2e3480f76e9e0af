"""Which head's answer a user reads: the fused head's whenever the pair has a text and a picture (even when
the text-only head says something else), the text-only head's for a text alone, the image-only head's for a
picture alone; the same in a batch and on the explorer's single pair."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features.store import FeatureStore
from core.io.tables import prepare_pairs
from core.scoring.answer import answering_heads
from core.scoring.batch import score_rows

from .conftest import fake_predictor

# Three heads that disagree: the text says positive, the picture negative, the pair neutral.
SAYS = {"text": [0.1, 0.1, 0.8], "image": [0.7, 0.2, 0.1], "fused": [0.2, 0.6, 0.2]}  # LABELS order


@pytest.fixture()
def disagreeing(monkeypatch):
    """A predictor whose heads give SAYS for every row that has their inputs."""
    predictor = fake_predictor(store=FeatureStore(None))

    def probabilities(text, image, has_text, has_image):
        present = {"text": has_text, "image": has_image, "fused": has_text & has_image}
        out = {}
        for head, p in SAYS.items():
            out[head] = np.tile(np.array(p), (len(has_text), 1))
            out[head][~np.asarray(present[head], bool)] = np.nan
        return out

    monkeypatch.setattr(predictor, "probabilities", probabilities)
    return predictor


def test_in_a_batch_the_fused_head_answers_for_a_pair_and_the_present_head_otherwise(disagreeing, table):
    folder = table["folder"]
    frame = pd.DataFrame({"text": ["both", "text alone", ""], "image": ["pic_0.png", "", "pic_1.png"]})
    out = score_rows(prepare_pairs(frame, images_root=folder), disagreeing).frame
    assert out["prediction_source"].tolist() == ["fused", "text", "image"]
    assert out["prediction"].tolist() == ["neutral", "positive", "negative"]
    assert out["confidence"].tolist() == [0.6, 0.8, 0.7]


def test_the_explorer_answers_a_pair_with_the_fused_head_too(disagreeing, table):
    picture = (table["folder"] / "pic_0.png").read_bytes()
    both = disagreeing.predict_pair("both", picture)
    assert (both.source, both.label, both.confidence) == ("fused", "neutral", 0.6)
    assert disagreeing.predict_pair("text alone").source == "text"
    assert disagreeing.predict_pair(None, picture).source == "image"


def test_no_head_answers_a_row_without_inputs():
    usable = {head: np.array([False, True]) for head in ("text", "image")} | {"fused": np.array([False, False])}
    assert answering_heads(usable).tolist() == [None, "text"]
