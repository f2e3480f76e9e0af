"""Every chart builds from realistic inputs, with the traces, axes and colours the pages rely on."""
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from app.charts import (
    CLASS_COLORS,
    HEAD_COLORS,
    class_distribution_chart,
    confidence_histogram,
    confusion_matrix_chart,
    probability_chart,
    reliability_diagram,
    saliency_overlay,
    token_effect_html,
    token_effect_legend,
)
from core.io.labels import LABELS
from core.scoring.metrics import reliability_bins


def test_probability_chart_has_one_bar_group_per_available_head():
    fig = probability_chart({"text": [0.7, 0.2, 0.1], "image": None, "fused": np.array([0.1, 0.3, 0.6])})

    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == ["Text only", "Fused"]  # missing image head omitted
    assert all(list(trace.x) == list(LABELS) for trace in fig.data)
    assert list(fig.data[1].text) == ["10%", "30%", "60%"]
    assert fig.data[0].marker.color == HEAD_COLORS["text"]
    assert fig.layout.barmode == "group"
    assert fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.title.text


def test_class_distribution_counts_each_heads_predictions():
    fig = class_distribution_chart({
        "text": ["positive", "positive", "negative", "neutral"],
        "fused": ["positive", "positive", "positive", "positive"],
    })
    text_trace, fused_trace = fig.data
    assert list(text_trace.y) == [1, 1, 2]
    assert list(fused_trace.y) == [0, 0, 4]
    assert list(fused_trace.text) == ["0%", "0%", "100%"]


def test_confidence_histogram_puts_the_heads_side_by_side_on_a_percent_axis():
    rng = np.random.default_rng(0)
    fig = confidence_histogram({"image": rng.uniform(0.34, 1, 20), "text": rng.uniform(0.34, 1, 20)})
    assert [trace.type for trace in fig.data] == ["histogram", "histogram"]
    assert [trace.name for trace in fig.data] == ["Text only", "Image only"]  # stable head order
    # Side by side in solid colours: overlaid translucent bars blend into a colour no head has.
    assert fig.layout.barmode == "group"
    assert all(trace.opacity in (None, 1) for trace in fig.data)
    assert [trace.marker.color for trace in fig.data] == [HEAD_COLORS["text"], HEAD_COLORS["image"]]


def test_confusion_matrix_chart_annotates_counts_with_true_and_predicted_axes():
    matrix = [[5, 1, 0], [2, 3, 1], [0, 0, 7]]
    fig = confusion_matrix_chart(matrix, "Fused head on test")

    heatmap = fig.data[0]
    assert heatmap.type == "heatmap"
    assert [list(row) for row in heatmap.z] == matrix
    assert heatmap.texttemplate == "%{text}"
    assert fig.layout.xaxis.title.text == "predicted"
    assert fig.layout.yaxis.title.text == "true"
    assert fig.layout.title.text == "Fused head on test"


def test_reliability_diagram_draws_the_diagonal_and_one_line_per_head_skipping_empty_bins():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.92, 0.04, 0.04], [0.2, 0.6, 0.2], [0.5, 0.2, 0.3], [0.95, 0.03, 0.02]])
    fig = reliability_diagram({"fused": reliability_bins(y, probs)})

    diagonal, fused = fig.data
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    assert fused.name == "Fused"
    assert len(fused.x) == 3  # four rows fall into three non-empty bins


def test_token_effect_html_colours_on_a_fixed_scale_and_escapes_tokens():
    html_text = token_effect_html(["<script>", "great", "awful", "meh"], [0.0, 0.30, -0.125, 0.002])

    assert "<script>" not in html_text and "&lt;script&gt;" in html_text
    assert "rgba(44,160,44,0.75)" in html_text  # 30 points, past the 25-point scale: full green
    assert "rgba(214,39,40,0.38)" in html_text  # 12.5 points against: half-strength red
    assert "rgba(44,160,44,0.01)" in html_text  # 0.2 points: barely tinted, whatever the other words do
    assert token_effect_legend() in html_text
    with pytest.raises(ValueError):
        token_effect_html(["a"], [0.1, 0.2])


def test_saliency_overlay_keeps_the_image_size_and_shows_the_heat():
    image = Image.new("RGB", (64, 48), "white")
    heatmap = np.zeros((7, 7))
    heatmap[:, 4:] = 1.0  # right side salient

    overlay = saliency_overlay(image, heatmap, alpha=0.5)

    assert overlay.size == image.size and overlay.mode == "RGB"
    pixels = np.asarray(overlay, dtype=int)
    left, right = pixels[24, 2], pixels[24, 61]
    assert right[0] > right[2]  # hot: reddish
    assert left[2] > left[0]  # cold: bluish


def test_saliency_overlay_accepts_greyscale_and_rgba_images():
    for mode in ("L", "RGBA"):
        overlay = saliency_overlay(Image.new(mode, (10, 20)), np.random.default_rng(0).random((3, 5)))
        assert overlay.size == (10, 20)


def test_class_colours_follow_the_sentiment():
    assert set(CLASS_COLORS) == set(LABELS)
    rgb = {label: tuple(int(CLASS_COLORS[label][i:i + 2], 16) for i in (1, 3, 5)) for label in LABELS}
    red, green, blue = rgb["negative"]
    assert red > 1.5 * max(green, blue)  # negative is red
    red, green, blue = rgb["positive"]
    assert green > 1.5 * max(red, blue)  # positive is green
    assert max(rgb["neutral"]) - min(rgb["neutral"]) < 16  # neutral is grey
