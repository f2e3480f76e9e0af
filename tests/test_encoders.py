"""A user picks encoders by spec: the bundled defaults work offline, the seed's DistilBERT + ViT load
by the same code path from a folder, and an unreachable hub name fails with a clear message."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.encoders import EncoderUnavailable, load_image_encoder, load_text_encoder


def test_bundled_text_encoder_gives_its_last_three_layers_mean_pooled(encoders):
    text, _ = encoders
    vectors = text.encode(["I love this", "I hate this", "I love this"])
    assert vectors.shape == (3, 3 * 384) and text.dim == 1152
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-5)  # padding in a batch changes nothing
    single = text.encode(["I love this"])[0]
    np.testing.assert_allclose(single, vectors[0], atol=1e-5)
    # Sentence embeddings put the two opposite sentences closer than random but not identical.
    assert not np.allclose(vectors[0], vectors[1])
    # The last of the three is MiniLM's own sentence embedding, which ``bundled:minilm-l6`` gives alone.
    sentence = load_text_encoder("bundled:minilm-l6")
    assert sentence.dim == 384 and sentence.id != text.id
    np.testing.assert_allclose(sentence.encode(["I love this"])[0], vectors[0, 768:], atol=1e-5)


def test_bundled_image_encoder_gives_1280_d_pooled_features(encoders):
    _, image = encoders
    red = Image.new("RGB", (300, 200), (220, 30, 30))
    blue = Image.new("RGB", (64, 64), (20, 30, 220))
    vectors = image.encode([red, blue])
    assert vectors.shape == (2, 1280) and image.dim == 1280
    assert np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])


def test_encoder_ids_are_stable_and_name_the_weights(encoders):
    text, image = encoders
    assert text.id == load_text_encoder().id and text.id.startswith("text:bundled:minilm-l6-last3:")
    assert image.id.startswith("image:bundled:efficientnet-lite0-int8:")
    assert load_image_encoder("bundled:efficientnet-lite0").id.startswith("image:bundled:efficientnet-lite0:")


def _drawn_photo(seed: int) -> Image.Image:
    """Something photo-like: a colour gradient with a few shapes (a flat colour is not what the int8
    ranges were calibrated on)."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 320)[None, :, None] * rng.uniform(0, 255, 3) + rng.uniform(0, 120, 3)
    picture = Image.fromarray(np.clip(np.repeat(ramp, 240, axis=0), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(6):
        x, y = rng.integers(0, 280), rng.integers(0, 200)
        draw.ellipse((x, y, x + rng.integers(20, 90), y + rng.integers(20, 90)), fill=tuple(rng.integers(0, 255, 3)))
    return picture


def test_int8_default_image_encoder_tracks_the_fp32_network(encoders):
    """The default runs the shipped int8 graph; each picture's int8 vector points the way the fp32
    network's does, far closer to it than to any other picture's."""
    _, int8 = encoders
    fp32 = load_image_encoder("bundled:efficientnet-lite0")
    pictures = [_drawn_photo(seed) for seed in range(6)]
    a, b = int8.encode(pictures), fp32.encode(pictures)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cosine = a @ b.T
    assert int8.runtime == "onnxruntime-int8"
    assert np.diag(cosine).min() > 0.9
    assert (cosine.argmax(axis=1) == np.arange(len(pictures))).all()


def test_int8_image_encoder_without_its_graph_names_the_fp32_alternative(tmp_path):
    from core.encoders import EfficientNetLite0Int8Encoder

    with pytest.raises(EncoderUnavailable, match="or use bundled:efficientnet-lite0$"):
        EfficientNetLite0Int8Encoder(graph_dir=tmp_path)


def test_long_text_is_flagged_as_truncated(encoders):
    text, _ = encoders
    assert text.truncated(["short", "word " * 400]) == [False, True]


@pytest.fixture(scope="module")
def tiny_seed_models(tmp_path_factory):
    """Tiny random DistilBERT and ViT saved like a hub download would be."""
    from transformers import (BertTokenizerFast, DistilBertConfig, DistilBertModel, ViTConfig,
                              ViTImageProcessor, ViTModel)
    from core.encoders import _bundled_minilm_folder

    root = tmp_path_factory.mktemp("seed_models")
    text_dir, image_dir = root / "distilbert-tiny", root / "vit-tiny"
    DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)).save_pretrained(text_dir)
    BertTokenizerFast.from_pretrained(str(_bundled_minilm_folder())).save_pretrained(text_dir)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=48), add_pooling_layer=False).save_pretrained(image_dir)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(image_dir)
    return text_dir, image_dir


def test_seed_distilbert_and_vit_load_from_a_folder_and_give_cls_vectors(tiny_seed_models):
    text_dir, image_dir = tiny_seed_models
    text = load_text_encoder(str(text_dir))
    image = load_image_encoder(str(image_dir))
    assert text.pooling == "cls" and text.dim == 32
    assert text.encode(["hello world", "a longer sentence here"]).shape == (2, 32)
    assert image.dim == 24 and image.encode([Image.new("RGB", (50, 40), "green")]).shape == (1, 24)


def test_unreachable_hub_model_names_the_bundled_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailable) as text_error:
        load_text_encoder("distilbert-base-uncased")
    assert "bundled:minilm-l6" in str(text_error.value)
    with pytest.raises(EncoderUnavailable) as image_error:
        load_image_encoder("google/vit-base-patch16-224")
    assert "bundled:efficientnet-lite0" in str(image_error.value)


def test_unknown_bundled_spec_is_refused():
    with pytest.raises(EncoderUnavailable, match="Available"):
        load_text_encoder("bundled:nope")


def test_offline_machine_gets_the_clear_error_at_once_not_after_hub_retries(monkeypatch):
    """Without HF_HUB_OFFLINE set, a machine with no route to the hub must not sit in the hub
    client's retries: one failed connect and the bundled alternative is named."""
    import socket

    from huggingface_hub import constants

    import core.encoders as encoders

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def no_network(address, timeout=None):
        attempts.append(address)
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(EncoderUnavailable, match="bundled:minilm-l6"):
        load_text_encoder("distilbert-base-uncased")
    assert len(attempts) == 1 and attempts[0][1] == 443
    assert encoders.hub_reachable() is False
