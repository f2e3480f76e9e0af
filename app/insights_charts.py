"""Plotly figures of the analysis page's Themes and Compare versions views: each theme's share of the
filtered posts with its interval beside its sentiment mix, the themes' shares over time, and the
version-against-version matrix. Pure builders like app/analysis_charts.py; theme names are made of the
posts' own words, so they are HTML-escaped (Plotly reads a few tags in its text)."""
from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import CLASS_COLORS
from core.io.labels import LABELS

_TEMPLATE = "plotly_white"
TREND_THEMES = 8  # themes drawn over time (the largest); the table lists them all


def themes_chart(table, names: dict[int, str]) -> go.Figure:
    """Per theme (largest first): its share of the filtered posts with the 95 % interval (left) and its
    posts' predicted classes, stacked (right)."""
    labels = [html.escape(names[int(t)]) for t in table["id"]]
    share, low, high = table["share"] * 100, table["share_lo"] * 100, table["share_hi"] * 100
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.4, 0.6], horizontal_spacing=0.03,
                        subplot_titles=("Share of the filtered posts", "Sentiment mix (predicted class)"))
    fig.add_bar(y=labels, x=share, orientation="h", marker_color="#4c78a8", showlegend=False, name="share",
                error_x=dict(type="data", symmetric=False, array=high - share, arrayminus=share - low),
                customdata=list(zip(table["n"], low, high)),
                hovertemplate="%{y}: %{x:.1f} % (95 % interval %{customdata[1]:.1f}–%{customdata[2]:.1f}), "
                              "%{customdata[0]:,} posts<extra></extra>", row=1, col=1)
    for c in LABELS:
        fig.add_bar(y=labels, x=table[f"share_{c}"] * 100, orientation="h", name=c, marker_color=CLASS_COLORS[c],
                    customdata=list(zip(table[f"lo_{c}"] * 100, table[f"hi_{c}"] * 100)),
                    hovertemplate="%{y}: " + c + " %{x:.1f} % (95 % interval %{customdata[0]:.1f}–"
                                  "%{customdata[1]:.1f})<extra></extra>", row=1, col=2)
    fig.update_xaxes(title_text="% of posts", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title_text="% of the theme's posts", range=[0, 100], row=1, col=2)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(template=_TEMPLATE, barmode="stack", height=max(300, 120 + 34 * len(labels)),
                      legend_title_text="", title=dict(text="Themes"), margin=dict(t=90))
    return fig


def theme_trend_chart(trend, names: dict[int, str], freq: str) -> go.Figure:
    """Each of the largest themes' share of the posts of each period (day, week or month)."""
    fig = go.Figure()
    largest = trend.groupby("theme")["n"].sum().sort_values(ascending=False).index[:TREND_THEMES]
    for theme in largest:
        part = trend[trend["theme"] == theme]
        name = html.escape(names.get(int(theme), str(theme)))
        fig.add_scatter(x=part["period"], y=part["share"] * 100, mode="lines+markers", name=name,
                        customdata=part["n"], hovertemplate="%{x}: " + name + " %{y:.1f} % (%{customdata:,} posts)"
                                                            "<extra></extra>")
    period = {"D": "day", "W": "week", "M": "month"}[freq]
    fig.update_layout(template=_TEMPLATE, height=420, legend_title_text="", hovermode="closest",
                      title=dict(text=f"Share of each {period}'s posts by theme (the {TREND_THEMES} largest)"),
                      yaxis_title="% of the period's posts", xaxis_title=f"{period} starting")
    return fig


def matrix_chart(matrix: list[list[int]], names: tuple[str, str]) -> go.Figure:
    """Posts by version A's class (rows) and version B's (columns), in label order; the diagonal agrees."""
    fig = go.Figure(go.Heatmap(z=matrix, x=[f"B: {c}" for c in LABELS], y=[f"A: {c}" for c in LABELS],
                               colorscale="Blues", text=matrix, texttemplate="%{text:,}", showscale=False,
                               hovertemplate="A %{y}, B %{x}: %{z:,} posts<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(template=_TEMPLATE, height=360, title=dict(
        text=f"A = {html.escape(names[0])} against B = {html.escape(names[1])}"))
    return fig
