"""Summaries of a scored table (core.scoring.batch.score_rows' frame) for charts and the correction set."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.io.labels import HEAD_NAMES, LABEL_TO_INDEX, LABELS
from core.scoring.batch import head_probabilities
from core.scoring.metrics import reliability_bins


def scored(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] != "error"]


def branch_predictions(frame: pd.DataFrame) -> dict[str, list[str]]:
    """head -> the predicted classes of the rows that head could score."""
    out = {}
    for head in HEAD_NAMES:
        probs = head_probabilities(frame, head)
        ok = ~np.isnan(probs).any(axis=1)
        if ok.any():
            out[head] = [LABELS[k] for k in probs[ok].argmax(1)]
    return out


def branch_confidences(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for head in HEAD_NAMES:
        probs = head_probabilities(frame, head)
        ok = ~np.isnan(probs).any(axis=1)
        if ok.any():
            out[head] = probs[ok].max(1)
    return out


def reliability_by_head(frame: pd.DataFrame, n_bins: int = 10) -> dict[str, list[dict]]:
    out = {}
    if "label" not in frame:
        return out
    labelled = frame["label"].notna().to_numpy()
    for head in HEAD_NAMES:
        probs = head_probabilities(frame, head)
        ok = labelled & ~np.isnan(probs).any(axis=1)
        if ok.any():
            y = frame.loc[ok, "label"].map(LABEL_TO_INDEX).to_numpy(dtype=int)
            out[head] = reliability_bins(y, probs[ok], n_bins)
    return out


def wrong_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Labelled, scored rows whose prediction differs from the label, with both a text and an image
    (only such pairs can train all three heads)."""
    if "label" not in frame:
        return frame.iloc[0:0]
    mask = (frame["status"] != "error") & frame["label"].notna() & frame["prediction"].notna() \
        & (frame["prediction"] != frame["label"]) & frame["text"].notna() & frame["image"].notna()
    return frame[mask]
