"""Summaries of a scored table (core.scoring.batch.score_rows' frame) for charts and the correction set."""
from __future__ import annotations

import numpy as np
import pandas as pd

from app.formatting import pct
from core.io.labels import HEAD_NAMES, LABEL_TO_INDEX, LABELS, head_label
from core.scoring.batch import head_probabilities
from core.scoring.metrics import reliability_bins

LINE = "line in CSV"  # how every table on the page numbers rows: the file's own line, header = line 1
# The answer first, next to the id; the long text and the nine probabilities after it.
LEADING_COLUMNS = ["id", "prediction", "confidence", "conflict", "status", "message"]


def csv_lines(frame: pd.DataFrame) -> pd.Series:
    """The CSV line each scored row came from (the frame's 0-based ``row`` + the header + 1)."""
    return frame["row"] + 2


def results_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The scored rows as the page shows them: CSV line numbers instead of 0-based rows, the answer
    before the inputs and the probabilities."""
    view = frame.drop(columns=["row"])
    lead = [c for c in LEADING_COLUMNS if c in view.columns]
    view = view[lead + [c for c in view.columns if c not in lead]]
    view.insert(0, LINE, csv_lines(frame).to_numpy())
    return view


THUMBNAIL_PX = 64
MAX_THUMBNAILS = 500  # beyond this many rows shown, the table goes without pictures (decoding costs ~5 ms each)


def thumbnail_uri(path) -> str | None:
    """A small JPEG of the picture at ``path`` as a data URI for a table cell, or None when it cannot
    be read (the row's own message already says why)."""
    import base64
    import io

    from core.io.images import ImageError, decode_image, read_image_bytes

    try:
        picture = decode_image(read_image_bytes(path), draft_size=(THUMBNAIL_PX, THUMBNAIL_PX))
    except (ImageError, OSError, ValueError):
        return None
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def download_frame(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """What the download holds: every scored column, CSV line numbers, and every column of the uploaded
    table the scorer did not map (``text_label``, notes …), on the row it came from."""
    from core.scoring.output import with_input_columns

    return results_view(with_input_columns(frame, table))


def metrics_table(metrics: dict) -> pd.DataFrame:
    """One row per head: pairs, accuracy with its 95 % interval, weighted and macro F1, as the page
    and the report show them."""
    return pd.DataFrame([{"Branch": head_label(h), "Pairs": m["n"], "Accuracy": pct(m["accuracy"]),
                          "Accuracy, 95 % interval": f"{pct(m['accuracy_ci95'][0])} – {pct(m['accuracy_ci95'][1])}",
                          "Weighted F1": pct(m["weighted_f1"]), "Macro F1": pct(m["macro_f1"])}
                         for h, m in metrics.items()])


def html_report(title: str, figures: dict, summary: pd.DataFrame | None, counts: dict, *,
                notes: list[str] | None = None, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """A self-contained HTML page of a scored batch: counts, the metrics table when there are labels,
    and every chart (plotly.js inlined once, so it opens offline and the charts stay interactive).
    ``notes`` are lines of plain text under the counts (the filters applied, say); ``tables`` go under
    the chart of the same name, or on their own. Every text is escaped: it may be the user's."""
    import html

    tables = dict(tables or {})
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>" + " · ".join(f"{html.escape(k)}: {v:,}" for k, v in counts.items()) + "</p>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in notes or []]
    if summary is not None:
        parts += ["<h2>Against the labels</h2>", summary.to_html(index=False, escape=True)]
    for n, (name, figure) in enumerate(figures.items()):
        parts += [f"<h2>{html.escape(name)}</h2>",
                  figure.to_html(full_html=False, include_plotlyjs=(n == 0))]
        if name in tables:
            parts.append(tables.pop(name).to_html(index=False, escape=True))
    for name, table in tables.items():
        parts += [f"<h2>{html.escape(name)}</h2>", table.to_html(index=False, escape=True)]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto} table{border-collapse:collapse}"
            " td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>" + "".join(parts) + "</body></html>")


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


def filter_rows(frame: pd.DataFrame, *, classes=None, wrong_only: bool = False,
                confidence: tuple[float, float] = (0.0, 1.0), conflicts_only: bool = False) -> pd.DataFrame:
    """The scored rows a user asked to see: predicted ``classes`` (None: any, bad rows included),
    only predictions that differ from a given label, a confidence range (inclusive; the full range
    keeps rows without a confidence), only modality conflicts."""
    keep = pd.Series(True, index=frame.index)
    if classes is not None and set(classes) != set(LABELS):
        keep &= frame["prediction"].isin(list(classes))
    if wrong_only:
        keep &= frame["label"].notna() & frame["prediction"].notna() & (frame["prediction"] != frame["label"]) \
            if "label" in frame else False
    low, high = confidence
    if (low, high) != (0.0, 1.0):
        keep &= frame["confidence"].between(low, high)
    if conflicts_only:
        keep &= frame["conflict"].astype(bool)
    return frame[keep]


def worth_labelling(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` unlabelled scored pairs (with a text and an image) most worth a label, best first:
    ``core.scoring.uncertainty.labelling_priority`` over the calibrated probabilities in ``frame``,
    with the priority in a ``priority`` column."""
    from core.scoring.uncertainty import labelling_priority, most_informative

    unlabelled = frame["label"].isna() if "label" in frame else pd.Series(True, index=frame.index)
    # The fused head answered: the row has both a text and an image (its cells are the user's, blank or not).
    candidates = frame[(frame["status"] != "error") & unlabelled & (frame["prediction_source"] == "fused")]
    if candidates.empty:
        return candidates.assign(priority=[])
    priority = labelling_priority(*(head_probabilities(candidates, head) for head in ("fused", "text", "image")))
    chosen = most_informative(priority, n)
    return candidates.iloc[chosen].assign(priority=priority[chosen])


def wrong_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Labelled, scored rows whose prediction differs from the label, with both a text and an image
    (only such pairs can train all three heads)."""
    if "label" not in frame:
        return frame.iloc[0:0]
    mask = (frame["status"] != "error") & frame["label"].notna() & frame["prediction"].notna() \
        & (frame["prediction"] != frame["label"]) & (frame["prediction_source"] == "fused")
    return frame[mask]
