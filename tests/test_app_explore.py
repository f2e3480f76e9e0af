"""Home and explorer pages driven with AppTest."""
from __future__ import annotations

import io

from PIL import Image

from .conftest import button, open_page, texts


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_home_shows_model_and_device(app_env):
    at = open_page("home")
    assert not at.error
    labels = {m.label: m.value for m in at.metric}
    assert labels["Text encoder"] == "bundled:minilm-l6-last3"
    assert labels["Head version"]
    assert "Device" in labels
    assert "Multimodal sentiment dashboard" in texts(at)


def test_explore_a_pair_and_add_it_to_the_correction_set(app_env):
    at = open_page("explore")
    at.text_area(key="explore_text").input("What a gorgeous sunny day, I love it")
    at.file_uploader(key="explore_upload").set_value(("sun.png", png((250, 200, 60)), "image/png"))
    at.run()
    button(at, "explore_analyse").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prediction"] in ("negative", "neutral", "positive")
    assert metrics["Confidence"].endswith("%") and metrics["Time taken"].endswith("ms")
    chart = at.get("plotly_chart")[0]
    assert chart.proto.spec  # the three-head probability figure
    import json
    names = {trace["name"] for trace in json.loads(chart.proto.spec)["data"]}
    assert names == {"Text only", "Image only", "Fused"}

    at.selectbox(key="explore_label").select("negative").run()
    button(at, "explore_add").click().run()
    assert "correction set now holds 1 pair" in texts(at)
    assert len(at.session_state["corrections"]) == 1


def test_text_only_says_why_there_is_no_fused_result(app_env):
    at = open_page("explore")
    at.text_area(key="explore_text").input("the meeting is at 3pm").run()
    button(at, "explore_analyse").click().run()
    assert not at.error
    assert any("no fused result" in i.value for i in at.info)


def test_conflict_example_shows_the_notice_and_explains(app_env):
    at = open_page("explore")
    at.selectbox(key="explore_example_choice").select_index(0).run()
    button(at, "explore_use_example").click().run()
    assert at.text_area(key="explore_text").value
    button(at, "explore_analyse").click().run()
    assert not at.error
    button(at, "explore_explain").click().run()
    assert not at.exception and not at.error
    assert "Explained in" in texts(at)


def test_unreadable_image_is_a_friendly_error(app_env):
    at = open_page("explore")
    at.file_uploader(key="explore_upload").set_value(("broken.png", b"not an image", "image/png")).run()
    assert at.error and "cannot be read" in at.error[0].value
    assert not at.exception
