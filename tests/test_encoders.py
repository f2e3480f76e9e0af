"""A user picks encoders by spec: the bundled defaults work offline, the seed's DistilBERT + ViT load
by the same code path from a folder, and an unreachable hub name fails with a clear message."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

from core.encoders import EncoderUnavailable, load_image_encoder, load_text_encoder
from tests.conftest import MVSA, requires_mvsa


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


def _cosines_int8_vs_fp32(int8, pictures):
    """Each picture through the int8 graph and through the fp32 network, decoded as the int8 encoder
    decodes (JPEG draft mode), row-wise cosine of the two."""
    import torch

    from core.encoders.int8_check import cosines

    pixels = torch.stack([int8.preprocess(int8.decode(p.read_bytes())) for p in pictures])
    with torch.inference_mode():
        fp32 = int8.forward_features(pixels).numpy()
    return cosines(int8.int8_runner().run(pixels=pixels), fp32), int8.encode_pixels(pixels), fp32


def test_int8_default_image_encoder_tracks_the_fp32_network_on_real_photos(encoders):
    """The default runs the shipped int8 graph, and on real photographs (the shipped reference
    photos: plain, brightened and captioned) each int8 vector points the way the fp32 network's
    does, on CPUs with and without VNNI alike (7-bit weights cannot overflow the AVX2 kernel)."""
    from core.encoders.int8_check import reference_pictures

    _, int8 = encoders
    pictures = reference_pictures()
    assert len(pictures) >= 8
    cos, served, fp32 = _cosines_int8_vs_fp32(int8, pictures)
    assert int8.check.passed and int8.runtime == "onnxruntime-int8"
    assert np.median(cos) >= 0.95 and cos.min() >= 0.90, np.round(cos, 3)
    # What the encoder serves is the int8 graph's output, and each picture is nearest its own.
    a = served / np.linalg.norm(served, axis=1, keepdims=True)
    b = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    assert ((a @ b.T).argmax(axis=1) == np.arange(len(pictures))).all()


@requires_mvsa()
def test_int8_graph_tracks_the_fp32_network_on_mvsa_photos(encoders):
    """The same on 40 real tweet photos (MVSA dev), the pictures users score."""
    import pandas as pd

    _, int8 = encoders
    dev = pd.read_csv(MVSA / "dev.csv")
    cos, _, _ = _cosines_int8_vs_fp32(int8, [MVSA / "images" / name for name in dev["image"][:40]])
    assert np.median(cos) >= 0.95 and cos.min() >= 0.80, np.round(np.sort(cos)[:5], 3)


def test_int8_check_runs_once_per_machine_and_is_remembered(mmsa_home, monkeypatch):
    import json

    import core.encoders.int8_check as int8_check
    from core.encoders import EfficientNetLite0Int8Encoder

    first = EfficientNetLite0Int8Encoder()
    cache = json.loads((mmsa_home / "int8-check.json").read_text())
    assert list(cache.values()) == [first.check.as_dict()] and first.check.passed
    assert first.check.n_pictures == len(int8_check.reference_pictures())

    def must_not_run(*_):
        raise AssertionError("the check ran again on the same machine")

    monkeypatch.setattr(int8_check, "run_int8_check", must_not_run)
    assert EfficientNetLite0Int8Encoder().check == first.check


def test_int8_check_fails_when_the_graph_drifts_from_fp32(encoders):
    """A graph whose numbers drift (as 8-bit weights do on a CPU without VNNI) fails the check."""
    from core.encoders.int8_check import run_int8_check

    _, int8 = encoders

    class Drifting:
        def run(self, pixels):
            honest = int8.int8_runner().run(pixels=pixels)
            noise = np.random.default_rng(0).normal(size=honest.shape).astype(np.float32)
            return honest + noise * np.linalg.norm(honest, axis=1, keepdims=True) / np.sqrt(honest.shape[1])

    drifting = copy.copy(int8)
    drifting.int8_runner = lambda: Drifting()
    result = run_int8_check(drifting)
    assert not result.passed and result.median_cosine < 0.95
    assert "FAILED" in result.summary()


def test_failed_int8_check_serves_the_fp32_network_and_says_so(mmsa_home, monkeypatch):
    import core.encoders.int8_check as int8_check
    from core.encoders import EfficientNetLite0Int8Encoder, encoder_status

    monkeypatch.setattr(int8_check, "MIN_MEDIAN_COSINE", 1.01)  # no graph can pass: as on a drifting CPU
    encoder = EfficientNetLite0Int8Encoder()
    assert not encoder.check.passed
    assert "fp32" in encoder.runtime and "int8 check failed" in encoder.notice.lower()
    # Its vectors are the fp32 network's, filed apart from the int8 ones; the head still fits (same id).
    assert encoder.feature_key != encoder.id and encoder.id.startswith("image:bundled:efficientnet-lite0-int8:")
    fp32 = load_image_encoder("bundled:efficientnet-lite0")
    pictures = [Image.open(p) for p in int8_check.reference_pictures()[:3]]
    served, expected = encoder.encode(pictures), fp32.encode(pictures)
    np.testing.assert_allclose(served, expected, atol=1e-3 * np.abs(expected).max())
    status = encoder_status(encoder)
    assert status["notice"] == encoder.notice and status["int8_check"]["passed"] is False


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
    from transformers import (
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    from core.encoders.text import _bundled_minilm_folder

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


def test_encoders_satisfy_the_protocols_and_bundled_specs_come_from_the_registries(encoders, tiny_seed_models):
    from core.encoders import IMAGE_SPECS, TEXT_SPECS, Encoder, ImageEncoderProtocol, known_specs

    text, image = encoders
    text_dir, image_dir = tiny_seed_models
    for encoder in (text, load_text_encoder(str(text_dir))):
        assert isinstance(encoder, Encoder) and not isinstance(encoder, ImageEncoderProtocol)
    for encoder in (image, load_image_encoder(str(image_dir))):
        assert isinstance(encoder, ImageEncoderProtocol)
    assert list(TEXT_SPECS) == ["bundled:minilm-l6-last3", "bundled:minilm-l6"]
    assert list(IMAGE_SPECS) == ["bundled:efficientnet-lite0-int8", "bundled:efficientnet-lite0"]
    assert known_specs() == [("text", "bundled:minilm-l6-last3"), ("text", "bundled:minilm-l6"),
                             ("image", "bundled:efficientnet-lite0-int8"), ("image", "bundled:efficientnet-lite0"),
                             ("text", "distilbert-base-uncased"), ("image", "google/vit-base-patch16-224")]


def test_a_spec_added_to_the_registry_loads_by_name_with_its_own_id(monkeypatch, tiny_seed_models):
    """What docs/architecture.md's "Adding an encoder spec" does, with tiny local models."""
    from core.encoders import IMAGE_SPECS, TEXT_SPECS, HuggingFaceImageEncoder, known_specs
    from core.encoders.text import _load_transformers_text

    text_dir, image_dir = tiny_seed_models
    monkeypatch.setitem(TEXT_SPECS, "bundled:tiny-distilbert",
                        lambda spec, adapter=None, device=None: _load_transformers_text(
                            spec, str(text_dir), text_dir, "cls", adapter, device))
    monkeypatch.setitem(IMAGE_SPECS, "bundled:tiny-vit", lambda device=None: HuggingFaceImageEncoder(str(image_dir), device))
    text = load_text_encoder("bundled:tiny-distilbert")
    assert text.id.startswith("text:bundled:tiny-distilbert:") and text.dim == 32
    assert text.id == load_text_encoder("bundled:tiny-distilbert").id  # the id names the weights, not the load
    assert load_image_encoder("bundled:tiny-vit").encode([Image.new("RGB", (40, 30), "red")]).shape == (1, 24)
    assert ("text", "bundled:tiny-distilbert") in known_specs() and ("image", "bundled:tiny-vit") in known_specs()
