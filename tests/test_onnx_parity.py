"""The ONNX Runtime graphs give the PyTorch features (so they share the encoder id and the feature
store): padded and unpadded text batches, truncated texts, a merged LoRA adapter, image batches of
any size. Export is deterministic, cached per encoder id, and a graph that disagrees is not used."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.encoders import onnx as encoder_onnx
from core.encoders.onnx import PARITY_TOLERANCE, relative_error

TEXTS = ["ok", "I love this so much!!! 😍 #happy", "worst. day. ever.",
         "a much longer text about the weather, the traffic, the coffee and the people on the train " * 3,
         "word " * 300,  # longer than max_tokens: truncated the same way on both paths
         ""]


@torch.inference_mode()
def torch_text_features(encoder, texts):
    batch = encoder.tokenize(texts)
    return encoder.forward_features(batch["input_ids"], batch["attention_mask"]).numpy()


def onnx_text_features(runner, encoder, texts):
    batch = encoder.tokenize(texts)
    return runner.run(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MMSA_ONNX", raising=False)
    return tmp_path / "home"


def test_text_graph_matches_pytorch_on_padded_unpadded_and_truncated_batches(encoders, home):
    text, _ = encoders
    runner = encoder_onnx.text_runner(text)
    assert runner is not None
    # One padded batch, each text alone (no padding at all), and batches of two.
    cases = [TEXTS, *[[t] for t in TEXTS], TEXTS[:2], TEXTS[3:5]]
    for texts in cases:
        err = relative_error(torch_text_features(text, texts), onnx_text_features(runner, text, texts))
        assert err < PARITY_TOLERANCE, (texts[:1], err)


def test_encode_through_onnx_equals_pytorch_and_keeps_the_id(encoders, home):
    text, _ = encoders
    warm = text.encode(["warm-up"])
    assert text.runtime == "onnxruntime"
    assert warm.shape == (1, text.dim) and warm.dtype == np.float32 and np.isfinite(warm).all()
    assert relative_error(torch_text_features(text, ["warm-up"]), warm) < PARITY_TOLERANCE
    many = [f"{t} {k}" for k in range(7) for t in TEXTS]  # several length-sorted batches
    encoded = text.encode(many, batch_size=8)
    assert encoded.shape == (len(many), text.dim) and np.isfinite(encoded).all()
    err = relative_error(torch_text_features(text, many), encoded)
    assert err < PARITY_TOLERANCE
    # Different texts give different vectors (texts cut at max_tokens may lose what told them apart).
    assert np.linalg.norm(encoded[0] - encoded[1]) > 1e-3 * np.linalg.norm(encoded[0])
    whole = [i for i, cut in enumerate(text.truncated(many)) if not cut]
    assert len(whole) == len(many) - 7
    assert len({encoded[i].tobytes() for i in whole}) == len(whole)
    assert text.id.startswith("text:bundled:minilm-l6-last3:")  # same id as the PyTorch encoder: shared store


def test_image_graph_matches_pytorch_for_any_batch_size(home):
    from core.encoders import FP32_IMAGE_SPEC, load_image_encoder

    image = load_image_encoder(FP32_IMAGE_SPEC)  # the int8 default is its own graph, not an export
    runner = encoder_onnx.image_runner(image)
    assert runner is not None
    pictures = [Image.new("RGB", (300, 200), (220, 30, 30)), Image.new("RGB", (64, 64), (20, 30, 220)),
                Image.effect_noise((320, 240), 60).convert("RGB"), Image.linear_gradient("L").convert("RGB"),
                Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 50).convert("RGB")]
    pixels = torch.stack([image.preprocess(p) for p in pictures])
    with torch.inference_mode():
        reference = image.forward_features(pixels).numpy()
    for batch in (1, 2, 5):
        got = np.concatenate([runner.run(pixels=pixels[s:s + batch]) for s in range(0, len(pixels), batch)])
        assert relative_error(reference, got) < PARITY_TOLERANCE
    assert relative_error(reference, image.encode(pictures)) < PARITY_TOLERANCE
    assert image.runtime == "onnxruntime"


def test_a_merged_lora_adapter_is_in_the_exported_graph(tmp_path, home):
    from peft import LoraConfig, get_peft_model

    from core.encoders import load_text_encoder

    base = load_text_encoder()
    torch.manual_seed(0)
    peft_model = get_peft_model(load_text_encoder().model,
                                LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                           init_lora_weights=False))  # random B: the adapter changes outputs
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)

    tuned = load_text_encoder(adapter=adapter_dir)
    assert tuned.id != base.id
    assert encoder_onnx.cache_folder(tuned.id, "text") != encoder_onnx.cache_folder(base.id, "text")
    runner = encoder_onnx.text_runner(tuned)
    assert runner is not None
    reference = torch_text_features(tuned, TEXTS)
    assert relative_error(reference, onnx_text_features(runner, tuned, TEXTS)) < PARITY_TOLERANCE
    # ... and the graph really carries the adapter: it differs from the base encoder's features.
    assert relative_error(torch_text_features(base, TEXTS), reference) > 1e-3


def test_export_is_deterministic_and_cached(tmp_path, monkeypatch, encoders):
    text, _ = encoders
    digests = []
    for name in ("a", "b"):
        monkeypatch.setenv("MMSA_HOME", str(tmp_path / name))
        assert encoder_onnx.text_runner(text) is not None
        path = encoder_onnx.cache_folder(text.id, "text") / "model.onnx"
        assert path.is_relative_to(tmp_path / name / "onnx")
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    # Second use in the same home loads the cached graph instead of exporting again.
    before = path.stat().st_mtime_ns
    assert encoder_onnx.text_runner(text) is not None
    assert path.stat().st_mtime_ns == before


def test_a_graph_that_disagrees_with_pytorch_is_not_used(encoders, home, monkeypatch):
    text, _ = encoders
    monkeypatch.setattr(encoder_onnx, "PARITY_TOLERANCE", 0.0)
    with pytest.warns(UserWarning, match="stays in PyTorch"):
        assert encoder_onnx.text_runner(text) is None


def test_onnx_can_be_switched_off(home, monkeypatch):
    from core.encoders import load_image_encoder

    monkeypatch.setenv("MMSA_ONNX", "0")
    image = load_image_encoder("bundled:efficientnet-lite0")
    feats = image.encode([Image.new("RGB", (50, 40), "green")])
    assert image.runtime == "torch"
    assert feats.shape == (1, image.dim) and np.isfinite(feats).all() and np.abs(feats).max() > 0
    assert not (home / "onnx").exists()
    # The int8 default's numbers exist only in its shipped graph: it runs there regardless.
    int8 = load_image_encoder()
    int8.encode([Image.new("RGB", (50, 40), "green")])
    assert int8.runtime == "onnxruntime-int8"


@pytest.mark.parametrize("damage", ["garbled graph", "truncated graph", "garbled record"])
def test_a_damaged_cached_graph_is_exported_again_and_checked_again(encoders, home, damage):
    text, _ = encoders
    assert encoder_onnx.text_runner(text) is not None
    folder = encoder_onnx.cache_folder(text.id, "text")
    graph, record = folder / "model.onnx", folder / "meta.json"
    good = graph.read_bytes()
    if damage == "garbled graph":
        graph.write_bytes(b"\x00junk" * 1000)
    elif damage == "truncated graph":
        graph.write_bytes(good[: len(good) // 2])  # a crash mid-copy
    else:
        record.write_text("{not json")
    with pytest.warns(UserWarning, match="damaged"):
        runner = encoder_onnx.text_runner(text)
    assert runner is not None
    assert graph.read_bytes() == good  # exported again, the same deterministic bytes
    assert json.loads(record.read_text())["ok"] is True  # and parity-checked again
    assert relative_error(torch_text_features(text, TEXTS), onnx_text_features(runner, text, TEXTS)) < PARITY_TOLERANCE
