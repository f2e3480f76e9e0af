"""Score a table of pairs in chunks, with a progress callback and a status for every row.

A bad row never stops the batch: it gets ``status = error`` and its reason. If something breaks
mid-run (the machine, a bug), the rows scored so far are kept in the result and ``failure`` says
what happened; calling again with ``start=result.completed`` carries on, and the rows before it cost
nothing since their features are in the store.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from core.featurize import encode_pairs
from core.threads import one_torch_thread
from core.labels import LABELS
from core.model import HEAD_NAMES

PROBABILITY_COLUMNS = [f"p_{head}_{label}" for head in HEAD_NAMES for label in LABELS]


@dataclass
class Progress:
    done: int
    total: int
    elapsed_s: float
    errors: int

    @property
    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


@dataclass
class BatchResult:
    frame: pd.DataFrame          # one row per scored input row, in input order
    completed: int               # rows [0, completed) are in ``frame``
    total: int
    failure: str | None = None   # set when the run stopped early

    @property
    def finished(self) -> bool:
        return self.completed >= self.total and self.failure is None


def score_rows(rows: Sequence, predictor, *, chunk_size: int = 64, start: int = 0,
               previous: pd.DataFrame | None = None,
               on_progress: Callable[[Progress], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> BatchResult:
    """Score ``rows`` (core.data.PairRow) from ``start``; ``previous`` holds the rows already scored."""
    frames = [previous] if previous is not None and len(previous) else []
    started = time.perf_counter()
    done, n_errors = start, 0 if previous is None else int((previous["status"] == "error").sum())
    failure = None
    for chunk_start in range(start, len(rows), chunk_size):
        chunk = rows[chunk_start:chunk_start + chunk_size]
        try:
            frames.append(score_chunk(chunk, predictor))
        except Exception as exc:  # noqa: BLE001 - keep what was done, report, let the user resume
            failure = f"stopped at row {chunk_start}: {type(exc).__name__}: {exc}"
            break
        done = chunk_start + len(chunk)
        n_errors += int((frames[-1]["status"] == "error").sum())
        if on_progress:
            on_progress(Progress(done, len(rows), time.perf_counter() - started, n_errors))
        if should_stop and should_stop() and done < len(rows):
            failure = f"stopped by the user at row {done}"
            break
    frame = pd.concat(frames, ignore_index=True) if frames else empty_result()
    return BatchResult(frame, done, len(rows), failure)


def score_chunk(rows: Sequence, predictor) -> pd.DataFrame:
    encoded = encode_pairs(rows, predictor.text_encoder, predictor.image_encoder, predictor.store)
    with one_torch_thread():
        probs = predictor.probabilities(encoded.text, encoded.image, encoded.has_text, encoded.has_image)
    conflicts = predictor.conflicts(probs)
    records = []
    for i, row in enumerate(rows):
        error = encoded.errors[i]
        if error is None and not encoded.has_text[i] and not encoded.has_image[i]:
            error = "neither text nor image to score"
        record = {"row": row.row, "id": row.id, "text": row.text,
                  "image": None if row.image_path is None else str(getattr(row, "image_name", None) or row.image_path.name),
                  "label": row.label}
        head_preds = {}
        for head in HEAD_NAMES:
            p = probs[head][i]
            for k, label in enumerate(LABELS):
                record[f"p_{head}_{label}"] = None if error or np.isnan(p[k]) else round(float(p[k]), 6)
            head_preds[head] = None if error or np.isnan(p).any() else LABELS[int(np.argmax(p))]
        source = next((h for h in ("fused", "text", "image") if head_preds[h] is not None), None)
        record.update({
            "text_prediction": head_preds["text"], "image_prediction": head_preds["image"],
            "prediction": head_preds[source] if source else None,
            "confidence": None if source is None else round(float(np.nanmax(probs[source][i])), 6),
            "prediction_source": source,
            "conflict": bool(conflicts[i]) if error is None and encoded.has_text[i] and encoded.has_image[i] else False,
            "status": "error" if error else ("warning" if encoded.warnings[i] else "ok"),
            "message": error or "; ".join(encoded.warnings[i]),
        })
        records.append(record)
    return pd.DataFrame.from_records(records, columns=result_columns())


def result_columns() -> list[str]:
    return ["row", "id", "text", "image", "label", *PROBABILITY_COLUMNS, "text_prediction", "image_prediction",
            "prediction", "confidence", "prediction_source", "conflict", "status", "message"]


def empty_result() -> pd.DataFrame:
    return pd.DataFrame(columns=result_columns())


def head_probabilities(frame: pd.DataFrame, head: str) -> np.ndarray:
    return frame[[f"p_{head}_{label}" for label in LABELS]].to_numpy(dtype=float)


def labelled_metrics(frame: pd.DataFrame) -> dict[str, dict] | None:
    """Per-head metrics over the scored rows that have a label and that head's probabilities."""
    from core.labels import LABEL_TO_INDEX
    from core.metrics import classification_metrics

    if "label" not in frame or frame["label"].isna().all():
        return None
    result = {}
    for head in HEAD_NAMES:
        probs = head_probabilities(frame, head)
        usable = frame["label"].notna().to_numpy() & ~np.isnan(probs).any(axis=1)
        if usable.sum() == 0:
            continue
        y = frame.loc[usable, "label"].map(LABEL_TO_INDEX).to_numpy(dtype=int)
        result[head] = classification_metrics(y, probs[usable])
    return result or None
