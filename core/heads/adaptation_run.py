"""One adaptation from a labelled table to a card: the user's rows encoded (text, and a picture where the
row names one), the Adapter fitted on them over the predictor's heads, the card of the version it saves
as. The Correct page's adaptation mode and ``python -m core.cli correct`` both go through here."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.features.sets import FeatureSet
from core.heads.adaptation import AdaptationConfig, Adapter, PostSet
from core.heads.training import TrainingRefused
from core.io.labels import HEAD_NAMES, LABEL_TO_INDEX
from core.registry.card import HeadCard


@dataclass
class LabelledPosts:
    """The usable labelled rows of a table as features, what they were (id, text, image, label) and
    each row left out with its reason ('row n: reason', n the spreadsheet line)."""
    posts: PostSet
    table: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def encode_posts(rows: Sequence, predictor) -> LabelledPosts:
    """Encode prepared rows (core.io.tables.PairRow) through the predictor's encoders and feature store.
    A row needs a text and a label; a picture is used where the row names one. A row naming a picture
    that cannot be read is left out (not taken as text-only: its label may be about the picture)."""
    from core.heads.recipe import encode_in_chunks

    keep, problems = [], []
    for row in rows:
        where = f"row {row.row + 2}"  # the spreadsheet line: the header is line 1
        if row.error:
            problems.append(f"{where}: {row.error}")
        elif row.label is None:
            problems.append(f"{where}: no label")
        elif not row.text:
            problems.append(f"{where}: an adaptation learns from texts; this row has none")
        else:
            keep.append(row)
    encoded = encode_in_chunks(keep, predictor.text_encoder, predictor.image_encoder, predictor.store)
    usable = []
    for i, row in enumerate(keep):
        if encoded.errors[i]:
            problems.append(f"row {row.row + 2}: {encoded.errors[i]}")
        else:
            usable.append(i)
    kept = [keep[i] for i in usable]
    posts = PostSet(encoded.text[usable], encoded.image[usable], encoded.has_image[usable],
                    np.array([LABEL_TO_INDEX[r.label] for r in kept], dtype=np.int64))
    table = pd.DataFrame({"id": [r.id for r in kept], "text": [r.text for r in kept],
                          "image": [r.image_path.name if r.image_path is not None else "" for r in kept],
                          "label": [r.label for r in kept]}, columns=["id", "text", "image", "label"])
    return LabelledPosts(posts, table, problems)


@dataclass
class AdaptationRun:
    """One adaptation: the fitted Adapter (its ``model_`` is the new heads), the posts it learned from,
    the rows left out, and the seconds from the start (encoding included) to the result."""
    adapter: Adapter
    labelled: LabelledPosts
    config: AdaptationConfig
    reference_name: str = ""
    seconds: float = 0.0


def run_adaptation(predictor, rows: Sequence, replay: FeatureSet | None, check: FeatureSet | None,
                   config: AdaptationConfig | None = None, *, reference_name: str = "",
                   on_step: Callable[[str, float], None] | None = None) -> AdaptationRun:
    """Adapt the predictor's heads to the labelled ``rows``; the predictor itself is never changed.
    ``on_step(message, share done)`` hears of the encoding and of every fit."""
    started = time.perf_counter()
    config = config or AdaptationConfig()
    step = on_step or (lambda message, done: None)
    step(f"Encoding {len(rows)} rows…", 0.0)
    labelled = encode_posts(rows, predictor)
    if len(labelled.posts) == 0:
        first = f" (first: {labelled.problems[0]})" if labelled.problems else ""
        raise TrainingRefused(f"none of the {len(rows)} rows can be used{first}")
    # Encoding is most of a first run; the fits share the rest of the bar.
    adapter = Adapter(predictor.heads, config).fit(labelled.posts, replay=replay, check=check,
                                  on_step=lambda message, done: step(message, 0.3 + 0.7 * done))
    return AdaptationRun(adapter, labelled, config, reference_name, time.perf_counter() - started)


def adapted_card(base_card: HeadCard, run: AdaptationRun, *, base_version: str) -> HeadCard:
    """The card of an adapted version: same encoders and shape as its parent, the adapted heads'
    temperatures from the held-out labels, what it was adapted on with the held-out figures, and the
    reference set before / after (the parent's test figures no longer apply)."""
    adapter = run.adapter
    base_card = HeadCard.coerce(base_card)
    keep = {k: v for k, v in base_card.to_dict().items()
            if k not in ("version", "created_at", "weights_sha256", "builtin", "note", "parent", "metrics",
                         "training", "imported_from", "resplit")}
    keep["temperatures"] = {**(base_card.temperatures or {}), **adapter.temperatures_}
    labels = run.labelled.table["label"]
    keep["training"] = {
        "kind": "adaptation", "base_version": base_version, "n_labels": int(len(labels)),
        "label_counts": labels.value_counts().to_dict(), "with_image": adapter.protocol_["with_image"],
        "adapted_heads": adapter.adapted_heads_, "config": run.config.as_dict(),
        "replay_weight": adapter.replay_weight_, "replay_choice": adapter.replay_choice_,
        "held_out": {"protocol": adapter.protocol_, **adapter.evaluation_, "vs_parent": adapter.vs_parent_},
        "learning_curve": adapter.curve_,
        "more_labels": adapter.verdict_, "seconds": round(run.seconds, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    reference = adapter.reference_
    if reference:
        keep["metrics"] = {"reference": {
            "name": run.reference_name, "n": reference["n"],
            **{head: {"accuracy": reference["after"][head]} for head in HEAD_NAMES},
            "before": {head: {"accuracy": reference["before"][head]} for head in HEAD_NAMES},
        }}
    return HeadCard.from_dict(keep, folder=base_card.folder)
