"""The reproducible recipe behind a head version: labelled CSVs → features → heads → temperatures →
metrics → a version folder (safetensors + JSON card).

``python -m core.cli train`` calls ``build_head``; the shipped default in ``assets/models/default`` was
made by the command written in the README.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from core import config
from core.features.pipeline import EncodedPairs, encode_pairs
from core.features.sets import FeatureSet
from core.features.store import FeatureStore
from core.heads.calibration import apply_temperature, fit_temperature
from core.heads.training import TrainConfig, predict_logits, train_heads
from core.io.labels import HEAD_NAMES, LABEL_TO_INDEX, LABELS, LabelError, normalise_label
from core.io.tables import prepare_pairs, read_table
from core.machine import machine_block
from core.registry import HeadCard, write_version_folder
from core.scoring.conflict import CONFLICT_THRESHOLD, conflict_flags, evaluate_conflict_flag
from core.scoring.metrics import classification_metrics, expected_calibration_error


@dataclass
class LabelledSet:
    """A labelled CSV encoded: its features, the usable rows aligned with them, and the rows left out with why."""
    features: FeatureSet
    frame: object            # the CSV rows that were usable (pandas DataFrame), aligned with features
    skipped: list[str]       # "row 12: reason" for rows left out


def load_labelled_set(csv_path: Path, images_dir: Path, text_encoder, image_encoder, store: FeatureStore,
                      *, text_column: str = "text", image_column: str = "image",
                      label_column: str = "label") -> LabelledSet:
    """Encode a labelled CSV. Training uses pairs with both a text and an image; the rest are listed."""
    frame = read_table(csv_path)
    rows = prepare_pairs(frame, text_column=text_column, image_column=image_column, label_column=label_column,
                         images_root=images_dir, require_label=True)
    encoded = encode_in_chunks(rows, text_encoder, image_encoder, store)
    usable, skipped = [], []
    for i, row in enumerate(rows):
        if encoded.errors[i]:
            skipped.append(f"row {row.row}: {encoded.errors[i]}")
        elif not (encoded.has_text[i] and encoded.has_image[i]):
            skipped.append(f"row {row.row}: needs both a text and an image for training")
        else:
            usable.append(i)
    usable_frame = frame.iloc[[rows[i].row for i in usable]].reset_index(drop=True)
    labels = np.array([LABEL_TO_INDEX[rows[i].label] for i in usable], dtype=np.int64)
    features = FeatureSet(encoded.text[usable], encoded.image[usable], labels,
                          _optional_labels(usable_frame, "text_label"), _optional_labels(usable_frame, "image_label"))
    return LabelledSet(features, usable_frame, skipped)


def encode_in_chunks(rows, text_encoder, image_encoder, store, chunk: int = 256) -> EncodedPairs:
    """encode_pairs over a long table, a chunk at a time: encode_pairs holds every image file's bytes
    of its rows while it works, which for all of MVSA train would be ~400 MB."""
    parts = [encode_pairs(rows[i:i + chunk], text_encoder, image_encoder, store) for i in range(0, len(rows), chunk)]
    if not parts:
        return encode_pairs(rows, text_encoder, image_encoder, store)
    return EncodedPairs(np.concatenate([p.text for p in parts]), np.concatenate([p.image for p in parts]),
                        np.concatenate([p.has_text for p in parts]), np.concatenate([p.has_image for p in parts]),
                        [e for p in parts for e in p.errors], [w for p in parts for w in p.warnings])


def _optional_labels(frame, column: str) -> np.ndarray | None:
    if column not in frame.columns:
        return None
    try:
        return np.array([LABEL_TO_INDEX[normalise_label(v)] for v in frame[column]], dtype=np.int64)
    except LabelError:
        return None


def fit_temperatures(model, dev: FeatureSet) -> dict[str, float]:
    """Per head, the temperature that calibrates ``model``'s probabilities on ``dev`` (rounded to 4 places)."""
    logits = predict_logits(model, dev)
    return {name: round(float(fit_temperature(logits[name], dev.labels)), 4) for name in HEAD_NAMES}


def evaluate(model, data: LabelledSet, temperatures: dict[str, float] | None = None,
             conflict_threshold: float = CONFLICT_THRESHOLD) -> dict:
    """Metrics of each head (calibrated when temperatures are given) plus, where the CSV has MVSA's
    per-modality labels, the fused head on real text/image conflicts and the conflict flag's quality."""
    features = data.features
    logits = predict_logits(model, features)
    temperatures = temperatures or {name: 1.0 for name in HEAD_NAMES}
    probs = {name: apply_temperature(logits[name], temperatures[name]) for name in HEAD_NAMES}
    result = {name: classification_metrics(features.labels, probs[name]) for name in HEAD_NAMES}
    for name in HEAD_NAMES:
        result[name]["ece_uncalibrated"] = float(
            expected_calibration_error(features.labels, apply_temperature(logits[name], 1.0)))
    result["n"] = int(len(features))
    if features.text_labels is not None and features.image_labels is not None:
        real = features.text_labels != features.image_labels
        if real.any():
            result["fused_on_modality_disagreement"] = classification_metrics(
                features.labels[real], probs["fused"][real])
        flags = conflict_flags(probs["text"], probs["image"], conflict_threshold)
        fused_correct = probs["fused"].argmax(1) == features.labels
        result["conflict_flag"] = {"threshold": conflict_threshold, "rule": "text and image heads predict "
                                   "opposite polarities, each with probability ≥ threshold",
                                   **evaluate_conflict_flag(flags, real, fused_correct)}
    return result


def build_head(train_csv: Path, dev_csv: Path, images_dir: Path, out_dir: Path, *,
               text_spec: str, image_spec: str, text_adapter: str | Path | None = None,
               test_csv: Path | None = None, train_config: TrainConfig | None = None,
               store: FeatureStore | None = None, note: str = "",
               log: Callable[[str], None] = print, encoders: tuple | None = None) -> HeadCard:
    """Train a head version and write it to ``out_dir``. ``test_csv`` is evaluated once, at the end,
    after every choice was made on dev; its numbers only go into the card."""
    from core.encoders import load_image_encoder, load_text_encoder

    started = time.time()
    train_config = train_config or TrainConfig()
    store = store or FeatureStore(config.feature_store_path())
    if encoders is not None:  # already loaded (tests, the app): must be the ones the specs name
        text_encoder, image_encoder = encoders
    else:
        text_encoder = load_text_encoder(text_spec, adapter=text_adapter)
        image_encoder = load_image_encoder(image_spec)
    log(f"encoders: {text_encoder.describe()} ({text_encoder.dim}-d), {image_encoder.describe()} ({image_encoder.dim}-d)")
    train = load_labelled_set(train_csv, images_dir, text_encoder, image_encoder, store)
    dev = load_labelled_set(dev_csv, images_dir, text_encoder, image_encoder, store)
    log(f"features: train {len(train.features)} pairs ({len(train.skipped)} skipped), dev {len(dev.features)} "
        f"({len(dev.skipped)} skipped), {time.time() - started:.0f}s")
    t0 = time.time()
    result = train_heads(train.features, dev.features, train_config,
                         on_epoch=lambda row: log(f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f}  "
                                                  f"dev fused acc {row['dev_accuracy']:.4f}  wF1 {row['dev_weighted_f1']:.4f}"))
    model, history, best_epoch = result.model, result.history, result.best_epoch
    train_seconds = time.time() - t0
    temperatures = fit_temperatures(model, dev.features)
    metrics = {"dev": evaluate(model, dev, temperatures)}
    if test_csv is not None:
        test = load_labelled_set(test_csv, images_dir, text_encoder, image_encoder, store)
        metrics["test"] = evaluate(model, test, temperatures)
        metrics["test"]["skipped"] = len(test.skipped)
    adapter_rel = None
    if text_adapter is not None:
        adapter_path = Path(text_adapter).resolve()
        try:
            adapter_rel = str(adapter_path.relative_to(config.REPO_ROOT))
        except ValueError:
            adapter_rel = str(adapter_path)
    card = HeadCard.from_dict({
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "parent": None,
        "labels": list(LABELS),
        "text_encoder": {**text_encoder.info.as_dict(), "spec": text_spec, "adapter": adapter_rel},
        "image_encoder": image_encoder.info.as_dict(),
        "hidden": train_config.hidden,
        "members": train_config.members,
        "dropout": train_config.dropout,
        "temperatures": temperatures,
        "conflict_threshold": CONFLICT_THRESHOLD,
        "training": {
            "train_csv": Path(train_csv).name, "dev_csv": Path(dev_csv).name,
            "data_fingerprint": train.features.fingerprint(),
            "n_train": len(train.features), "n_dev": len(dev.features),
            "epochs_run": len(history), "best_epoch": best_epoch,
            "config": train_config.as_dict(), "train_seconds": round(train_seconds, 2),
            "history": history,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "metrics": metrics,
        "machine": machine_block(),  # what train_seconds and any speed figure were measured on
    })
    write_version_folder(Path(out_dir), model.tensors(), card)
    log(f"wrote {out_dir} in {time.time() - started:.0f}s")
    return card
