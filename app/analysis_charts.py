"""Plotly figures of the analysis page: a breakdown (class shares and net sentiment per group, with
intervals) and a timeline (class shares with interval bands, unusual periods shaded, and volume).

Pure builders, like app/charts.py: an engine result in, a ``go.Figure`` out. Each bar and point
carries its group in ``customdata`` as ``[kind, value]`` (kind: value, blank or other), so a click on
the chart can filter the page by that group (``clicked_group``).
"""
from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import CLASS_COLORS
from core.io.labels import LABELS

UNUSUAL_FILL = "rgba(255, 165, 0, 0.18)"
_TEMPLATE = "plotly_white"


def _group_keys(groups) -> list[list]:
    return [["other", None] if other else (["blank", None] if value is None else ["value", value])
            for value, other in zip(groups["value"], groups["is_other"])]


def breakdown_chart(result) -> go.Figure:
    """Per group (rows, in the breakdown's order, top first): stacked class shares on the left, net
    sentiment with its 95 % interval on the right."""
    groups = result.groups
    # Plotly reads a few HTML tags in its text: a group's value is the user's, so it is escaped.
    labels = [html.escape(str(v)) for v in groups["label"]]
    keys = _group_keys(groups)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.62, 0.38], horizontal_spacing=0.03,
                        subplot_titles=("Share of posts by predicted class", "Net sentiment (positive − negative)"))
    for c in LABELS:
        share = groups[f"share_{c}"] * 100
        low, high = groups[f"share_{c}_low"] * 100, groups[f"share_{c}_high"] * 100
        fig.add_bar(
            name=c, y=labels, x=share, orientation="h", marker_color=CLASS_COLORS[c], customdata=[
                [*key, lo, hi, n] for key, lo, hi, n in zip(keys, low, high, groups["n"])],
            hovertemplate="%{y}: " + c + " %{x:.1f} % (95 % interval %{customdata[2]:.1f}–%{customdata[3]:.1f}), "
                          "%{customdata[4]:,} posts<extra></extra>", row=1, col=1)
    net, low, high = groups["net"] * 100, groups["net_low"] * 100, groups["net_high"] * 100
    fig.add_scatter(
        name="net sentiment", y=labels, x=net, mode="markers", marker=dict(color="#333333", size=9),
        error_x=dict(type="data", symmetric=False, array=high - net, arrayminus=net - low, color="#555555"),
        customdata=[[*key, lo, hi, n] for key, lo, hi, n in zip(keys, low, high, groups["n"])],
        hovertemplate="%{y}: net %{x:+.1f} points (95 % interval %{customdata[2]:+.1f} to %{customdata[3]:+.1f}), "
                      "%{customdata[4]:,} posts<extra></extra>", row=1, col=2, showlegend=False)
    fig.add_vline(x=0, line=dict(color="#999999", width=1), row=1, col=2)
    fig.update_xaxes(title_text="% of posts", range=[0, 100], row=1, col=1)
    fig.update_xaxes(title_text="points", range=[-105, 105], zeroline=False, row=1, col=2)
    fig.update_yaxes(autorange="reversed", type="category")
    height = max(280, 130 + 38 * len(labels))
    fig.update_layout(template=_TEMPLATE, barmode="stack", height=height, legend_title_text="",
                      title=dict(text=f"Sentiment by {html.escape(result.column)}"), clickmode="event+select",
                      margin=dict(t=90), legend=dict(traceorder="normal"))
    return fig


def timeline_chart(timeline) -> go.Figure:
    """Class shares per period with their 95 % interval as bands (top) and posts per period (bottom);
    periods whose mix differs from the level beyond chance are shaded."""
    periods = timeline.periods
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.06,
                        subplot_titles=("Share of posts by predicted class, with 95 % intervals", "Posts"))
    x = periods["start"]
    for c in LABELS:
        color = CLASS_COLORS[c]
        fig.add_scatter(x=x, y=periods[f"share_{c}_high"] * 100, mode="lines", line=dict(width=0), hoverinfo="skip",
                        showlegend=False, legendgroup=c, row=1, col=1)
        fig.add_scatter(x=x, y=periods[f"share_{c}_low"] * 100, mode="lines", line=dict(width=0), fill="tonexty",
                        fillcolor=_transparent(color), hoverinfo="skip", showlegend=False, legendgroup=c, row=1, col=1)
        fig.add_scatter(
            name=c, x=x, y=periods[f"share_{c}"] * 100, mode="lines+markers", line=dict(color=color), legendgroup=c,
            customdata=list(zip(periods["n"], periods["unusual"].map({True: " · unusual", False: ""}))),
            hovertemplate="%{x|%Y-%m-%d}: " + c + " %{y:.1f} % of %{customdata[0]:,} posts%{customdata[1]}"
                          "<extra></extra>", row=1, col=1)
    fig.add_bar(name="posts", x=x, y=periods["n"], marker_color="#7f7f7f", showlegend=False,
                hovertemplate="%{x|%Y-%m-%d}: %{y:,} posts<extra></extra>", row=2, col=1)
    half = {"D": 0.5, "W": 3.5, "M": 15}[timeline.freq]
    for start in periods.loc[periods["unusual"], "start"]:
        fig.add_vrect(x0=start - _days(half), x1=start + _days(half), fillcolor=UNUSUAL_FILL, line_width=0,
                      layer="below")
    fig.update_yaxes(title_text="% of posts", range=[0, 100], row=1, col=1)
    fig.update_yaxes(title_text="posts", rangemode="tozero", row=2, col=1)
    freq = {"D": "day", "W": "week", "M": "month"}[timeline.freq]
    fig.update_layout(template=_TEMPLATE, height=520, legend_title_text="", hovermode="closest",
                      title=dict(text=f"Sentiment per {freq} ({html.escape(timeline.column)}); shaded: unusual {freq}s"))
    return fig


def clicked_group(event) -> tuple[str, str | None] | None:
    """(kind, value) of the first group a chart selection event points at, or None: kind is value or
    blank (the pooled "other" group cannot be filtered on and gives None)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, (list, tuple)) and len(data) >= 2 and data[0] in ("value", "blank"):
            return data[0], (data[1] if data[0] == "value" else None)
    return None


def _transparent(hex_color: str, alpha: float = 0.15) -> str:
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _days(n: float):
    import pandas as pd

    return pd.Timedelta(days=n)
