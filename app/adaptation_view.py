"""What the Correct page shows of an adaptation (core.heads.adaptation_run.AdaptationRun): the learning
curve and the tables of figures. No Streamlit."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.formatting import pct
from core.io.labels import head_label


def with_interval(entry: dict) -> str:
    """'61.3% (95% interval 52.0%–69.9%, 150 posts)'."""
    return f"{pct(entry['accuracy'])} (95% interval {pct(entry['low'])}–{pct(entry['high'])}, {entry['n']} posts)"


def learning_curve(curve: list[dict], before: dict) -> go.Figure:
    """Held-out accuracy against the number of labels used, with 95% intervals, and the active version's
    accuracy on the same posts as a dotted line."""
    fig = go.Figure(go.Scatter(
        name="Adapted", x=[p["labels_used"] for p in curve], y=[p["accuracy"] for p in curve],
        mode="lines+markers", line=dict(color="#2ca02c"),
        error_y=dict(type="data", symmetric=False, array=[p["high"] - p["accuracy"] for p in curve],
                     arrayminus=[p["accuracy"] - p["low"] for p in curve]),
        hovertemplate="%{x:.0f} labels: %{y:.1%}<extra></extra>"))
    fig.add_hline(y=before["accuracy"], line_dash="dot", line_color="#7f7f7f",
                  annotation_text=f"active version {pct(before['accuracy'])}", annotation_position="bottom right")
    fig.update_xaxes(title_text="labels learned from", rangemode="tozero")
    fig.update_yaxes(title_text="accuracy on held-out posts", range=[0, 1.02], tickformat=".0%")
    fig.update_layout(template="plotly_white", height=320, margin=dict(t=40, b=40), showlegend=False,
                      title="Learning curve (held-out posts)")
    return fig


def reference_table(reference: dict) -> pd.DataFrame:
    """Per head, accuracy on the reference's held-out pairs before and after, and the change in points."""
    return pd.DataFrame([{"Branch": head_label(head), "before": pct(reference["before"][head]),
                          "after": pct(reference["after"][head]),
                          "change (points)": f"{(reference['after'][head] - reference['before'][head]) * 100:+.1f}"}
                         for head in ("fused", "text", "image")])


def reference_drop(reference: dict) -> float:
    """The largest loss of accuracy on the reference, in points, over the fused and text heads."""
    if not reference:
        return 0.0
    return max((reference["before"][h] - reference["after"][h]) * 100 for h in ("fused", "text"))


def protocol_text(protocol: dict) -> str:
    """How the figures were measured, in a sentence."""
    how = ("on a held-out quarter of them" if protocol["kind"] == "held-out"
           else f"by {protocol['kind']} cross-validation (every post measured once, by a fit that did not see it)")
    pictures = (f"{protocol['with_image']} with a picture" if protocol["with_image"] else "none with a picture: "
                "the text head learned them, the fused and image heads are unchanged")
    return f"{protocol['n_labels']} labelled posts ({pictures}); measured {how}."
