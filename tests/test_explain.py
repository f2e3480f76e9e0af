"""Explanations: word scores are faithful (the word that flips the sentiment scores highest), the
heatmap covers the picture, the ViT path works by occlusion, and the CLI prints it all."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.heads.model import HeadConfig, LateFusionHeads
from core.io.labels import LABEL_TO_INDEX, LABELS
from core.scoring.explain import Explanation, explain_pair, format_explanation, occlusion_saliency, word_spans
from core.scoring.predict import Predictor

NOUNS = ["food", "service", "movie", "hotel", "trip", "room", "view", "staff", "music", "weather"]
ADJECTIVES = ["good", "great", "nice", "lovely", "excellent", "fine"]
HELD_OUT = "the service was not good"


def _picture(mood: str, seed: int, size=(120, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array((250, 200, 60) if mood == "positive" else (30, 40, 70))
    image = Image.new("RGB", size, tuple(int(c) for c in np.clip(base + rng.integers(-20, 20, 3), 0, 255)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = int(rng.integers(0, size[0] - 30)), int(rng.integers(0, size[1] - 30))
        colour = tuple(int(c) for c in np.clip(base + rng.integers(-70, 70, 3), 0, 255))
        draw.ellipse([x, y, x + 25, y + 25], fill=colour)
    return image


@pytest.fixture(scope="module")
def negation_predictor(encoders):
    """Heads trained on 'the X was ADJ' (positive) vs 'the X was not ADJ' (negative): the only thing that
    decides the text head is the word 'not'. Images match the label (warm vs dark)."""
    text_encoder, image_encoder = encoders
    texts, labels = [], []
    for noun in NOUNS:
        for adjective in ADJECTIVES:
            for negated in (False, True):
                sentence = f"the {noun} was {'not ' if negated else ''}{adjective}"
                if sentence == HELD_OUT:
                    continue
                texts.append(sentence)
                labels.append(LABEL_TO_INDEX["negative" if negated else "positive"])
    labels = torch.tensor(labels)
    pictures = {mood: image_encoder.encode([_picture(mood, s) for s in range(4)]) for mood in ("positive", "negative")}
    image_feats = np.stack([pictures["negative" if y == 0 else "positive"][i % 4] for i, y in enumerate(labels)])
    text_feats = text_encoder.encode(texts)
    # A plain full-batch loop (core.heads.training.train_heads adds per-epoch dev metrics this test does not
    # need). One thread: these ops are tiny, and on a busy shared CPU thread hand-offs cost more than they save.
    torch.manual_seed(0)
    heads = LateFusionHeads(HeadConfig(text_encoder.dim, image_encoder.dim, hidden=32))
    heads.fit_normalisation(text_feats, image_feats)
    optimiser = torch.optim.Adam(heads.parameters(), lr=5e-3)
    text_t, image_t = torch.as_tensor(text_feats), torch.as_tensor(image_feats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        heads.train()
        for _ in range(60):
            logits = heads(text_t, image_t)
            loss = sum(torch.nn.functional.cross_entropy(value, labels) for value in logits.values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    heads.eval()
    card = {"labels": list(LABELS), "text_encoder": text_encoder.info.as_dict(),
            "image_encoder": image_encoder.info.as_dict()}
    return Predictor(text_encoder, image_encoder, heads, card)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_the_word_that_flips_the_sentiment_gets_the_largest_score(negation_predictor):
    explanation = explain_pair(negation_predictor, HELD_OUT, None)
    assert explanation.predicted == {"text": "negative"}
    assert explanation.tokens == HELD_OUT.split()
    assert set(explanation.token_scores) == {"text"}
    scores = np.array(explanation.token_scores["text"])
    assert len(scores) == len(explanation.tokens)
    # "not" carries the negative verdict: largest |score|, and positive = it supports "negative".
    assert explanation.tokens[int(np.argmax(np.abs(scores)))] == "not"
    assert scores[explanation.tokens.index("not")] > 0.3
    assert explanation.heatmap is None and explanation.heatmap_head is None


def test_fused_scores_and_heatmap_cover_the_picture(negation_predictor):
    picture = _picture("negative", 99, size=(600, 400))
    explanation = explain_pair(negation_predictor, HELD_OUT, _jpeg(picture))
    assert set(explanation.predicted) == {"text", "image", "fused"}
    assert set(explanation.token_scores) == {"text", "fused"}
    assert all(len(s) == len(explanation.tokens) for s in explanation.token_scores.values())
    heat = explanation.heatmap
    assert explanation.heatmap_head == "fused"
    assert heat.shape == (400, 600) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() == pytest.approx(1.0) and heat.std() > 0.01
    # EfficientNet-Lite0 sees the centre 400×400 square only: the cut-off sides cannot matter.
    assert heat[:, :90].max() == 0.0 and heat[:, -90:].max() == 0.0
    # The fused verdict matches what the Predictor itself reports for the pair.
    prediction = negation_predictor.predict_pair(HELD_OUT, _jpeg(picture))
    assert explanation.predicted["fused"] == prediction.label


def test_image_only_and_pil_input_explain_the_image_head(negation_predictor):
    picture = _picture("positive", 5, size=(90, 150))
    explanation = explain_pair(negation_predictor, None, picture)
    assert explanation.tokens == [] and explanation.token_scores == {}
    assert explanation.predicted == {"image": "positive"}
    assert explanation.heatmap_head == "image" and explanation.heatmap.shape == (150, 90)
    assert 0.0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1.0 and explanation.heatmap.std() > 0


def test_explanations_do_not_touch_the_feature_store(negation_predictor):
    text, picture = "the view was lovely", _jpeg(_picture("positive", 3))
    before = negation_predictor.store.count()
    explanation = explain_pair(negation_predictor, text, picture)
    assert set(explanation.predicted) == {"text", "image", "fused"}
    assert negation_predictor.store.count() == before
    # The same pair through the Predictor does go through the store: the count above could move.
    negation_predictor.predict_pair(text, picture)
    assert negation_predictor.store.count() == before + 2


def test_nothing_to_explain_is_a_clear_error(negation_predictor):
    with pytest.raises(ValueError, match="text, an image or both"):
        explain_pair(negation_predictor, "   ", None)


def test_occlusion_fallback_works_for_a_hugging_face_vit(tmp_path, encoders):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from core.encoders import load_image_encoder

    folder = tmp_path / "vit-tiny"
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=48), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    vit = load_image_encoder(str(folder))
    text_encoder = encoders[0]
    heads = LateFusionHeads(HeadConfig(text_encoder.dim, vit.dim, hidden=16)).eval()
    card = {"labels": list(LABELS), "text_encoder": text_encoder.info.as_dict(), "image_encoder": vit.info.as_dict()}
    predictor = Predictor(text_encoder, vit, heads, card)
    picture = _picture("positive", 1, size=(160, 100))
    explanation = explain_pair(predictor, "a lovely day", picture)
    heat = explanation.heatmap
    assert explanation.heatmap_head == "fused" and heat.shape == (100, 160)
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.std() > 0
    assert any("occlusion" in step for step in explanation.method)
    assert not any("occlusion" in note for note in explanation.notes)  # plain words only there
    # The occluded variants go through the encoder directly, one batched call.
    before = vit.n_encoded
    occlusion_saliency(predictor, picture, text_encoder.encode(["a lovely day"]), "image")
    assert vit.n_encoded - before == 1 + 6 * 10  # the full picture + a 6 × 10 grid of cells


def test_long_texts_are_left_out_in_bounded_groups_of_neighbours():
    assert word_spans(3, 40) == [(0, 1), (1, 2), (2, 3)]
    spans = word_spans(100, 40)
    assert len(spans) == 40 and spans[0][0] == 0 and spans[-1][1] == 100
    assert all(a == prev_b for (a, _), (_, prev_b) in zip(spans[1:], spans[:-1]))  # contiguous, no gaps
    assert word_spans(0, 40) == []


def test_format_explanation_ranks_words_and_describes_the_heatmap():
    heat = np.zeros((40, 60), np.float32)
    heat[:10, :15] = 1.0
    explanation = Explanation(tokens=["not", "good"], token_scores={"text": [0.8, -0.1], "fused": [0.5, 0.0]},
                              predicted={"text": "negative", "image": "neutral", "fused": "negative"},
                              heatmap=heat, heatmap_head="fused", seconds=0.25,
                              confidence={"text": 0.9, "image": 0.5, "fused": 0.7})
    text = format_explanation(explanation)
    assert "text   negative (90% sure)" in text
    assert text.index("+0.800  'not'") < text.index("-0.100  'good'")
    assert "pushes away" in text and "supports" in text
    assert "strongest region: top left" in text
    assert "0.25 s" in text


def test_cli_explain_prints_predictions_words_and_heatmap(negation_predictor, encoders, mmsa_home, tmp_path,
                                                          monkeypatch, capsys):
    import core.scoring.predict
    from core.cli import main
    from core.registry import write_version_folder

    version = tmp_path / "negation-head"
    card = {**negation_predictor.card.to_dict(), "hidden": 32, "dropout": 0.3}
    write_version_folder(version, negation_predictor.heads.tensors(), card)
    # The CLI builds the encoders the card names; hand it the ones these tests already loaded.
    monkeypatch.setattr(core.scoring.predict, "load_encoders_for_card", lambda _card: encoders)
    image = tmp_path / "photo.jpg"
    image.write_bytes(_jpeg(_picture("negative", 7, size=(300, 200))))
    code = main(["explain", "--text", HELD_OUT, "--image", str(image), "--head", str(version)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Predictions" in out and "text   negative" in out and "fused" in out
    ranked_text_words = out.split("text head → negative:")[1].splitlines()
    assert "'not'" in ranked_text_words[1]  # the strongest word is listed first
    assert "strongest region:" in out and "explained in" in out
