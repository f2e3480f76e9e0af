"""Does dynamic int8 quantisation of the text encoder keep the fused dev accuracy? (off by default)

    python bench/int8_accuracy.py

Encodes MVSA dev through the user's feature store with the shipped head's encoders, then scores dev
with the shipped head twice: with the fp32 text features and with text features from the int8 graph
(``onnxruntime.quantization.quantize_dynamic``, MatMul weights in int8). The image features are the
shipped head's own (its card's image encoder; its int8 graph has its own check,
``bench/int8_image_accuracy.py``). Prints one JSON line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> dict:
    from bench.levers import _int8_text_runner
    from core import config
    from core.encoders.onnx import cache_folder, relative_error
    from core.features.sets import FeatureSet
    from core.features.store import FeatureStore
    from core.heads.recipe import load_labelled_set
    from core.heads.training import predict_logits
    from core.registry import read_version_folder
    from core.scoring.predict import check_card_matches, heads_from_card, load_encoders_for_card

    torch.set_num_threads(1)  # small heads: one thread is fastest, and kind to a shared machine
    data = config.mvsa_dir()
    tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    text, image = load_encoders_for_card(card)  # the shipped pipeline's encoders
    check_card_matches(card, text, image)
    heads, head_source = heads_from_card(tensors, card), "shipped default head"
    store = FeatureStore(config.feature_store_path())
    dev = load_labelled_set(data / "dev.csv", data / "images", text, image, store)

    int8 = _int8_text_runner(text, cache_folder)
    texts = [str(t).strip() for t in dev.frame["text"]]
    fp32_text = dev.features.text
    int8_text = np.zeros_like(fp32_text)
    for start in range(0, len(texts), 32):
        batch = text.tokenizer(texts[start:start + 32], padding=True, truncation=True,
                               max_length=text.max_tokens, return_tensors="np")
        int8_text[start:start + 32] = int8.run(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    result = {"head": head_source, "n_dev": len(texts)}
    for name, feats in (("fp32", fp32_text), ("int8", int8_text)):
        logits = predict_logits(heads, FeatureSet(feats, dev.features.image, dev.features.labels))
        for head in ("fused", "text"):
            result[f"{head}_dev_accuracy_{name}"] = round(float((logits[head].argmax(1) == dev.features.labels).mean()), 4)
    result["fused_delta_points"] = round(100 * (result["fused_dev_accuracy_int8"] - result["fused_dev_accuracy_fp32"]), 2)
    result["text_feature_relative_error"] = round(relative_error(fp32_text, int8_text), 4)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
