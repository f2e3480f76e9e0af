"""The live chart of a correction run (core.heads.correction.correct_heads history rows). No Streamlit."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def correction_curves(history: list[dict]) -> go.Figure:
    """Loss (left) and, per epoch, the share of correction pairs right and replay accuracy (right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Accuracy"))
    epochs = [row["epoch"] for row in history]
    fig.add_scatter(name="Loss", x=epochs, y=[row["train_loss"] for row in history], mode="lines+markers",
                    line=dict(color="#1f77b4"), row=1, col=1)
    fig.add_scatter(name="Correction pairs right", x=epochs, y=[row["correction_accuracy"] for row in history],
                    mode="lines+markers", line=dict(color="#2ca02c"), row=1, col=2)
    if any("replay_accuracy" in row for row in history):
        fig.add_scatter(name="Replayed reference pairs right", x=epochs,
                        y=[row.get("replay_accuracy") for row in history], mode="lines+markers",
                        line=dict(color="#9467bd"), row=1, col=2)
    fig.update_xaxes(title_text="epoch", dtick=max(1, len(epochs) // 10))
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.05], tickformat=".0%", row=1, col=2)
    fig.update_layout(template="plotly_white", height=320, margin=dict(t=40, b=40), legend_title_text="")
    return fig
