"""The user's correction set and one live correction run over it.

A correction item is a labelled text + image pair a person says the model got wrong (from the
explorer, from wrongly predicted batch rows, or from a labelled upload). ``run_correction``
fine-tunes a *copy* of the active heads on them (``core.heads.correction.correct_heads``, replaying reference
pairs), and measures before / after on the items and on held-out reference pairs, so a correction
that breaks the model is visible before anybody saves it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError
from core.features.sets import FeatureSet
from core.features.store import text_features
from core.heads.calibration import apply_temperature
from core.heads.correction import CorrectionConfig, correct_heads
from core.heads.training import TrainingRefused, predict_logits
from core.io.images import read_image_bytes
from core.io.labels import HEAD_NAMES, LABEL_TO_INDEX, LABELS, normalise_label
from core.registry.card import HeadCard


@dataclass
class CorrectionItem:
    """One labelled pair collected for correction: text, image bytes, label (normalised), where it came from."""
    text: str
    image: bytes
    label: str
    image_name: str = "image"
    source: str = "explorer"
    id: str = ""

    def __post_init__(self):
        self.label = normalise_label(self.label)
        if not self.text or not self.text.strip():
            raise InputError("a correction pair needs a text")
        if not self.image:
            raise InputError("a correction pair needs an image")
        if not self.id:
            self.id = self.key[:10]

    @property
    def key(self) -> str:
        """Same text and same image bytes = the same pair (adding it again only updates its label)."""
        digest = hashlib.sha256(self.text.strip().encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.image)
        return digest.hexdigest()


class CorrectionSet:
    """An ordered, de-duplicated list of correction items (kept per user in the session)."""

    def __init__(self, items: Sequence[CorrectionItem] = ()):
        self.items: list[CorrectionItem] = []
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: CorrectionItem) -> bool:
        """Add ``item``; True when new, False when the pair was there (its label is updated)."""
        for existing in self.items:
            if existing.key == item.key:
                existing.label = item.label
                return False
        self.items.append(item)
        return True

    def remove(self, ids: Sequence[str]) -> None:
        """Drop the items with these ids."""
        drop = set(ids)
        self.items = [item for item in self.items if item.id not in drop]

    def clear(self) -> None:
        """Drop every item."""
        self.items = []

    def frame(self) -> pd.DataFrame:
        """The items as a table (id, text, image, label, from) for display."""
        return pd.DataFrame([{"id": i.id, "text": i.text, "image": i.image_name, "label": i.label,
                              "from": i.source} for i in self.items],
                            columns=["id", "text", "image", "label", "from"])

    def label_counts(self) -> dict[str, int]:
        """How many items carry each label (every label present, zero included)."""
        counts = {label: 0 for label in LABELS}
        for item in self.items:
            counts[item.label] += 1
        return counts


def items_from_rows(rows: Sequence, source: str) -> tuple[list[CorrectionItem], list[str]]:
    """Correction items from prepared, labelled rows (core.io.tables.PairRow); problems as 'row n: reason'."""
    items, problems = [], []
    for row in rows:
        where = f"row {row.row + 2}"  # the spreadsheet line: header is line 1
        if row.error:
            problems.append(f"{where}: {row.error}")
            continue
        if row.label is None:
            problems.append(f"{where}: no label")
            continue
        if not row.text or row.image_path is None:
            problems.append(f"{where}: a correction pair needs both a text and an image")
            continue
        try:
            blob = read_image_bytes(row.image_path)
            items.append(CorrectionItem(row.text, blob, row.label, row.image_path.name, source, str(row.id)))
        except (OSError, ValueError) as error:
            problems.append(f"{where}: {error}")
    return items, problems


def features_for(items: Sequence[CorrectionItem], predictor) -> FeatureSet:
    """Encode the items through the predictor's encoders and feature store."""
    if not items:
        raise TrainingRefused("the correction set is empty: add labelled pairs first")
    text = text_features(predictor.text_encoder, predictor.store, [i.text for i in items])
    image = np.concatenate([predictor.image_vector(i.image) for i in items])
    labels = np.array([LABEL_TO_INDEX[i.label] for i in items], dtype=np.int64)
    return FeatureSet(text, image, labels)


def head_accuracies(model, data: FeatureSet | None) -> dict[str, float]:
    """Accuracy of each head of ``model`` on ``data``; empty when there is no data."""
    if data is None or len(data) == 0:
        return {}
    logits = predict_logits(model, data)
    return {head: float((logits[head].argmax(1) == data.labels).mean()) for head in HEAD_NAMES}


def fused_predictions(model, data: FeatureSet) -> tuple[list[str], np.ndarray]:
    """(labels, confidence) of the fused head, softmax without temperature (argmax is the same)."""
    probs = apply_temperature(predict_logits(model, data)["fused"], 1.0)
    return [LABELS[k] for k in probs.argmax(1)], probs.max(1)


@dataclass
class CorrectionRun:
    """The outcome of one correction run: the corrected model, its history, per-pair before / after and reference
    accuracies."""
    model: object                        # the corrected LateFusionHeads (a copy; the base is untouched)
    history: list[dict]
    pairs: pd.DataFrame                  # per item: label, fused prediction before / after
    reference_before: dict[str, float]   # head -> accuracy on the held-out reference pairs
    reference_after: dict[str, float]
    n_reference: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def right_before(self) -> int:
        """Correction pairs the base head got right."""
        return int(self.pairs["right_before"].sum())

    @property
    def right_after(self) -> int:
        """Correction pairs the corrected head gets right."""
        return int(self.pairs["right_after"].sum())


def run_correction(predictor, items: Sequence[CorrectionItem], replay: FeatureSet | None,
                   check: FeatureSet | None, config: CorrectionConfig | None = None, *,
                   on_epoch: Callable[[dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> CorrectionRun:
    """Correct the predictor's heads on ``items``; ``predictor`` itself is never changed."""
    import time

    started = time.perf_counter()
    data = features_for(items, predictor)
    base = predictor.heads
    before, before_conf = fused_predictions(base, data)
    ref_before = head_accuracies(base, check)
    result = correct_heads(base, data, replay, config, on_epoch=on_epoch, should_stop=should_stop)
    after, after_conf = fused_predictions(result.model, data)
    pairs = pd.DataFrame({
        "id": [i.id for i in items], "text": [i.text for i in items], "label": [i.label for i in items],
        "before": before, "before_confidence": before_conf, "after": after, "after_confidence": after_conf,
    })
    pairs["right_before"] = pairs["before"] == pairs["label"]
    pairs["right_after"] = pairs["after"] == pairs["label"]
    return CorrectionRun(result.model, result.history, pairs, ref_before, head_accuracies(result.model, check),
                         0 if check is None else len(check), time.perf_counter() - started)


def corrected_card(base_card: HeadCard, run: CorrectionRun, *, reference_name: str, base_version: str,
                   config: CorrectionConfig | None = None) -> HeadCard:
    """The card of a corrected version: same encoders (an adapter kept in the parent's folder goes along
    when it is saved) and calibration as its parent, new training record, the reference-set numbers
    measured here (the parent's test numbers no longer apply)."""
    config = config or CorrectionConfig()
    base_card = HeadCard.coerce(base_card)
    keep = {k: v for k, v in base_card.to_dict().items()
            if k not in ("version", "created_at", "weights_sha256", "builtin", "note", "parent", "metrics",
                         "training", "imported_from")}
    keep["training"] = {
        "kind": "correction", "base_version": base_version, "n_corrections": int(len(run.pairs)),
        "label_counts": run.pairs["label"].value_counts().to_dict(),
        "epochs_run": len(run.history), "config": vars(config).copy(), "history": run.history,
        "right_before": run.right_before, "right_after": run.right_after,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    keep["metrics"] = {"reference": {
        "name": reference_name, "n": run.n_reference,
        **{head: {"accuracy": run.reference_after.get(head)} for head in HEAD_NAMES if head in run.reference_after},
        "before": {head: {"accuracy": acc} for head, acc in run.reference_before.items()},
    }}
    return HeadCard.from_dict(keep, folder=base_card.folder)
