"""Does the int8 image encoder (the default) keep the fused dev accuracy of fp32? (bar: within 0.5 points)

    python bench/int8_image_accuracy.py [--seeds 3]

With the shipped head's text encoder, encodes MVSA train + dev with ``bundled:efficientnet-lite0``
(fp32, JPEG draft >= 448 px) and with ``bundled:efficientnet-lite0-int8`` (the shipped int8 graph,
JPEG draft >= 224 px), trains the default head recipe on each (same seeds, best epochs on dev), and
prints one JSON line: fused dev accuracy / weighted F1 per seed for each, their mean difference in
points, and the fp32-trained head scored on int8 dev features. test.csv is never read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(seeds: int = 3) -> dict:
    from core import config
    from core.encoders import FP32_IMAGE_SPEC, INT8_IMAGE_SPEC, load_image_encoder
    from core.features.store import FeatureStore
    from core.heads.recipe import load_labelled_set
    from core.heads.training import TrainConfig, predict_logits, train_heads
    from core.registry import read_version_folder
    from core.scoring.metrics import weighted_f1
    from core.scoring.predict import load_encoders_for_card

    torch.set_num_threads(1)  # small heads: one thread is fastest, and kind to a shared machine
    data = config.mvsa_dir()
    _, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    text, _ = load_encoders_for_card(card)
    store = FeatureStore(config.feature_store_path())
    sets = {}
    for spec in (FP32_IMAGE_SPEC, INT8_IMAGE_SPEC):
        image = load_image_encoder(spec)
        sets[spec] = [load_labelled_set(data / f"{split}.csv", data / "images", text, image, store).features
                      for split in ("train", "dev")]

    def score(model, dev):
        predicted = predict_logits(model, dev)["fused"].argmax(1)
        return [round(float((predicted == dev.labels).mean()), 4), round(weighted_f1(dev.labels, predicted), 4)]

    result = {"text_encoder": text.describe(), "recipe": TrainConfig().as_dict(), "seeds": seeds}
    rows = {FP32_IMAGE_SPEC: [], INT8_IMAGE_SPEC: [], "fp32 head on int8 dev features": []}
    for seed in range(seeds):
        models = {spec: train_heads(train, dev, TrainConfig(seed=seed)).model for spec, (train, dev) in sets.items()}
        for spec, model in models.items():
            rows[spec].append(score(model, sets[spec][1]))
        rows["fp32 head on int8 dev features"].append(score(models[FP32_IMAGE_SPEC], sets[INT8_IMAGE_SPEC][1]))
    for name, values in rows.items():
        result[name] = {"acc_wf1_per_seed": values, "mean_accuracy": round(float(np.mean([v[0] for v in values])), 4)}
    result["fused_delta_points"] = round(100 * (result[INT8_IMAGE_SPEC]["mean_accuracy"]
                                                - result[FP32_IMAGE_SPEC]["mean_accuracy"]), 2)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    main(parser.parse_args().seeds)
