"""The charts of a correction run (core.heads.correction.correct_heads history rows). No Streamlit."""
from __future__ import annotations

import plotly.graph_objects as go


def _layout(fig: go.Figure, title: str, epochs: list) -> go.Figure:
    fig.update_xaxes(title_text="epoch", dtick=max(1, len(epochs) // 10))
    fig.update_layout(template="plotly_white", height=320, margin=dict(t=40, b=40), title=title,
                      legend_title_text="")
    return fig


def loss_curve(history: list[dict]) -> go.Figure:
    """Training loss per epoch."""
    epochs = [row["epoch"] for row in history]
    fig = go.Figure(go.Scatter(name="Loss", x=epochs, y=[row["train_loss"] for row in history],
                               mode="lines+markers", line=dict(color="#1f77b4"), showlegend=False))
    fig.update_yaxes(title_text="loss")
    return _layout(fig, "Training loss", epochs)


def accuracy_curves(history: list[dict]) -> go.Figure:
    """Per epoch, the share of correction pairs right and (when recorded) of replayed reference pairs right."""
    epochs = [row["epoch"] for row in history]
    fig = go.Figure(go.Scatter(name="Correction pairs right", x=epochs,
                               y=[row["correction_accuracy"] for row in history], mode="lines+markers",
                               line=dict(color="#2ca02c")))
    if any("replay_accuracy" in row for row in history):
        fig.add_scatter(name="Replayed reference pairs right", x=epochs,
                        y=[row.get("replay_accuracy") for row in history], mode="lines+markers",
                        line=dict(color="#9467bd"))
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%")
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return _layout(fig, "Accuracy", epochs)
