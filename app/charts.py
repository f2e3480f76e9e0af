"""Plotly figures (and two small HTML / image helpers) for the dashboard pages.

Pure builders: data in, ``plotly.graph_objects.Figure`` out. No Streamlit here, so the CLI,
the tests and a notebook can draw exactly what the app draws.

Colours are fixed so that a class or a head looks the same on every page: negative is red,
neutral grey, positive green; text, image and fused heads have their own colours.
"""
from __future__ import annotations

import html
import re
from collections import Counter

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from core.io.labels import HEAD_NAMES, LABELS, head_label

CLASS_COLORS = {"negative": "#d62728", "neutral": "#8c8c8c", "positive": "#2ca02c"}
HEAD_COLORS = {"text": "#1f77b4", "image": "#ff7f0e", "fused": "#9467bd"}
_FALLBACK_COLOR = "#17becf"
_TEMPLATE = "plotly_white"


def export_config(name: str) -> dict:
    """Plotly's toolbar settings for a chart: the camera button saves a sharp PNG named after it."""
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"
    return {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2}}


def _head_color(head: str) -> str:
    return HEAD_COLORS.get(head, _FALLBACK_COLOR)


def _ordered_heads(mapping: dict) -> list[str]:
    """Known heads in text, image, fused order first, then anything else as given."""
    known = [h for h in HEAD_NAMES if h in mapping]
    return known + [h for h in mapping if h not in HEAD_NAMES]


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    fig.update_layout(title=dict(text=title), template=_TEMPLATE, legend_title_text="", **kwargs)
    return fig


def probability_chart(probs_by_head: dict) -> go.Figure:
    """Grouped bars: one group per class, one bar per available head (None heads are left out)."""
    fig = go.Figure()
    for head in _ordered_heads(probs_by_head):
        probs = probs_by_head[head]
        if probs is None:
            continue
        probs = np.asarray(probs, dtype=float).reshape(-1)
        fig.add_bar(
            name=head_label(head), x=list(LABELS), y=probs.tolist(),
            marker_color=_head_color(head),
            text=[f"{p:.0%}" for p in probs], textposition="outside",
            hovertemplate="%{x}: %{y:.1%}<extra>" + head_label(head) + "</extra>",
        )
    fig.update_yaxes(title_text="probability", range=[0, 1.1], tickformat=".0%")
    fig.update_xaxes(title_text="sentiment")
    return _layout(fig, "Sentiment probabilities by modality", barmode="group")


def class_distribution_chart(predictions_by_head: dict) -> go.Figure:
    """How many rows each head put in each class; bar labels show the share of rows."""
    fig = go.Figure()
    for head in _ordered_heads(predictions_by_head):
        predictions = predictions_by_head[head]
        if predictions is None:
            continue
        counts = Counter(predictions)
        total = max(len(predictions), 1)
        y = [counts.get(label, 0) for label in LABELS]
        fig.add_bar(
            name=head_label(head), x=list(LABELS), y=y, marker_color=_head_color(head),
            text=[f"{c / total:.0%}" for c in y], textposition="outside",
            hovertemplate="%{x}: %{y} rows (%{text})<extra>" + head_label(head) + "</extra>",
        )
    fig.update_yaxes(title_text="rows")
    fig.update_xaxes(title_text="predicted sentiment")
    return _layout(fig, "Predicted class distribution", barmode="group")


def confidence_histogram(confidences: dict) -> go.Figure:
    """Each head's confidence (max probability) in 5-point bins, the heads' bars side by side in each bin
    (overlaid translucent bars mix into a colour no head has)."""
    fig = go.Figure()
    for head in _ordered_heads(confidences):
        values = confidences[head]
        if values is None:
            continue
        fig.add_histogram(
            name=head_label(head), x=np.asarray(values, dtype=float).tolist(),
            xbins=dict(start=0.0, end=1.0, size=0.05), marker_color=_head_color(head),
            hovertemplate="confidence %{x}: %{y} rows<extra>" + head_label(head) + "</extra>",
        )
    fig.update_xaxes(title_text="confidence (max probability)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="rows")
    return _layout(fig, "Confidence distribution", barmode="group", bargap=0.15)


def confusion_matrix_chart(matrix, title: str = "Confusion matrix") -> go.Figure:
    """Heatmap of counts, rows = true class, columns = predicted class, counts written in cells."""
    counts = np.asarray(matrix, dtype=int)
    fig = go.Figure(go.Heatmap(
        z=counts.tolist(), x=list(LABELS), y=list(LABELS), colorscale="Blues",
        text=counts.tolist(), texttemplate="%{text}", showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
    ))
    fig.update_xaxes(title_text="predicted", side="bottom")
    # Reversed so the matrix reads like the printed one: negative in the top-left corner.
    fig.update_yaxes(title_text="true", autorange="reversed")
    return _layout(fig, title)


def reliability_diagram(bins_by_head: dict) -> go.Figure:
    """Accuracy against confidence per bin for each head; the diagonal is perfect calibration."""
    fig = go.Figure()
    fig.add_scatter(
        name="Perfect calibration", x=[0, 1], y=[0, 1], mode="lines",
        line=dict(color="#444444", dash="dash"), hoverinfo="skip",
    )
    for head in _ordered_heads(bins_by_head):
        bins = [b for b in (bins_by_head[head] or []) if b["count"]]  # empty bins have no point
        fig.add_scatter(
            name=head_label(head), mode="lines+markers",
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins],
            customdata=[b["count"] for b in bins], line=dict(color=_head_color(head)),
            hovertemplate="confidence %{x:.0%}, accuracy %{y:.0%} (%{customdata} rows)<extra>"
            + head_label(head) + "</extra>",
        )
    fig.update_xaxes(title_text="confidence", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="accuracy", range=[0, 1], tickformat=".0%")
    return _layout(fig, "Reliability diagram")


# Full colour at a change of 25 points in the probability of the predicted class, linear below, clipped
# above. The scale is fixed, not relative to the strongest word of each text: a colour then means the
# same effect on every pair, so a text whose words barely matter (all under a point) stays nearly
# white instead of painting its largest 0.2-point word solid green. 25 points is a decisive word: with
# three classes, taking 25 points from the answer's probability flips or nearly flips most answers;
# a 5-point word shows at a fifth of the strength, a 1-point word is barely tinted.
TOKEN_EFFECT_FULL_SCALE = 0.25


def token_effect_legend(full_scale: float = TOKEN_EFFECT_FULL_SCALE) -> str:
    """The one-line legend under ``token_effect_html``: what the colours mean and the scale's size."""
    return ("green = the word pushes towards the predicted class, red = away from it; full colour = leaving "
            f"the word out changes the answer's probability by {full_scale * 100:.0f} points or more, "
            "paler = less (the same scale for every text)")


def token_effect_html(tokens: list[str], scores: list[float],
                      full_scale: float = TOKEN_EFFECT_FULL_SCALE) -> str:
    """Tokens as coloured HTML spans on a fixed scale, followed by a one-line legend.

    ``scores`` are changes in the predicted class's probability (0..1, as ``core.scoring.explain``
    gives them). Colour strength is ``|score| / full_scale`` clipped to 1, so it carries the size of
    the effect the same way on every pair (see ``TOKEN_EFFECT_FULL_SCALE`` for why); each span's
    tooltip gives the change in probability points.
    """
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    if full_scale <= 0:
        raise ValueError(f"full_scale must be positive, got {full_scale}")
    spans = []
    for token, score in zip(tokens, np.nan_to_num(np.asarray(scores, dtype=float))):
        strength = min(abs(score) / full_scale, 1.0)
        rgb = "44,160,44" if score >= 0 else "214,39,40"  # CLASS_COLORS positive / negative
        spans.append(
            f'<span style="background-color: rgba({rgb},{0.75 * strength:.2f}); padding: 1px 3px; '
            f'border-radius: 3px;" title="{score * 100:+.1f} points">{html.escape(token)}</span>'
        )
    legend = f'<div style="font-size: 0.8em; color: #666;">{token_effect_legend(full_scale)}</div>'
    return f'<div style="line-height: 2;">{" ".join(spans)}</div>{legend}'


def _jet(values: np.ndarray) -> np.ndarray:
    """The classic jet colormap (blue → cyan → yellow → red) for values in 0..1, as RGB 0..1."""
    channels = [np.clip(1.5 - np.abs(4 * values - centre), 0, 1) for centre in (3, 2, 1)]
    return np.stack(channels, axis=-1)


def saliency_overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a 0..1 saliency map (any resolution) over the image; output has the image's size."""
    base = image.convert("RGB")
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {heat.shape}")
    # A float32 array becomes a Pillow float image, which resizes smoothly; size is (width, height).
    heat = np.asarray(Image.fromarray(heat).resize(base.size, Image.Resampling.BILINEAR))
    colored = _jet(np.clip(heat, 0.0, 1.0)) * 255.0
    blended = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * colored
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
