"""Home and explorer pages driven with AppTest."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from core.io.labels import LABELS

from .conftest import button, open_page, texts


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def uploader(at):
    """The explorer's image uploader (its key changes when an example replaces the upload)."""
    return next(u for u in at.file_uploader if u.key.startswith("explore_upload"))


def pick_example(at, example_id: str):
    """Select the shipped example pair ``example_id`` and press "Use this example"; returns the pair."""
    from app.examples import example_pairs

    choice = at.selectbox(key="explore_example_choice")
    option = next(o for o in choice.options if o.split(" — ")[0] == example_id)
    choice.select(option).run()
    button(at, "explore_use_example").click().run()
    assert not at.exception
    return next(e for e in example_pairs() if e.id == example_id)


def test_home_shows_model_and_device(app_env):
    import json

    from app.session import device_description
    from core.registry import open_registry

    at = open_page("home")
    assert not at.error
    labels = {m.label: m.value for m in at.metric}
    card = json.loads((app_env["head"] / "card.json").read_text())
    assert labels["Text encoder"] == card["text_encoder"]["spec"] == "bundled:minilm-l6-last3"
    assert labels["Image encoder"] == card["image_encoder"]["spec"]
    assert labels["Head version"] == open_registry().active_version()
    assert labels["Device"] == device_description()
    assert "Multimodal sentiment dashboard" in texts(at)


def test_explore_a_pair_and_add_it_to_the_correction_set(app_env):
    at = open_page("explore")
    at.text_area(key="explore_text").input("What a gorgeous sunny day, I love it")
    uploader(at).set_value(("sun.png", png((250, 200, 60)), "image/png"))
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
    assert [item.id for item in at.session_state["corrections"].items] == ["explore-1"]


def test_text_only_says_why_there_is_no_fused_result(app_env):
    at = open_page("explore")
    at.text_area(key="explore_text").input("the meeting is at 3pm").run()
    button(at, "explore_analyse").click().run()
    assert not at.error
    assert any("no fused result" in i.value for i in at.info)


def analyse_example(at, example_id: str):
    """Pick the shipped example pair ``example_id`` in the explorer and analyse it."""
    pick_example(at, example_id)
    button(at, "explore_analyse").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at.session_state["explore_result"]["prediction"]


def conflict_notices(at) -> list[str]:
    return [w.value for w in at.warning if "Modality conflict" in w.value]


def test_a_conflicting_pair_shows_the_notice_and_explains(app_env):
    # Bitter words over a bright, sunny drawing: the fixture head reads the text as negative and the
    # picture as positive, each almost surely (the pictures it learned from are drawn the same way).
    # The shipped examples use photos, which only the shipped head reads (the test below).
    import io

    from assets.examples.make_examples import draw_scene

    sunny = io.BytesIO()
    draw_scene("sunny", seed=7).save(sunny, format="PNG")
    at = open_page("explore")
    at.text_area(key="explore_text").input("I am so sad and angry, this is a disaster")
    uploader(at).set_value(("sunny.png", sunny.getvalue(), "image/png"))
    at.run()
    button(at, "explore_analyse").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    prediction = at.session_state["explore_result"]["prediction"]
    text, image = prediction.probs["text"], prediction.probs["image"]
    assert LABELS[int(text.argmax())] == "negative" and text.max() >= 0.5, text
    assert LABELS[int(image.argmax())] == "positive" and image.max() >= 0.5, image
    assert prediction.conflict
    notices = conflict_notices(at)
    assert len(notices) == 1, [w.value for w in at.warning]
    assert "the text reads **negative**" in notices[0] and "the image looks **positive**" in notices[0]
    assert f"({text.max():.1%})" in notices[0] and f"({image.max():.1%})" in notices[0]

    button(at, "explore_explain").click().run()
    assert not at.exception and not at.error
    assert "Explained in" in texts(at)
    assert len(conflict_notices(at)) == 1  # still shown next to the explanation


def test_a_pair_whose_text_and_picture_agree_shows_no_conflict_notice(app_env):
    at = open_page("explore")
    prediction = analyse_example(at, "sunny-picnic")
    assert not prediction.conflict
    assert LABELS[int(prediction.probs["text"].argmax())] == LABELS[int(prediction.probs["image"].argmax())] == "positive"
    assert conflict_notices(at) == []
    assert "Result" in texts(at)


def test_unreadable_image_is_a_friendly_error(app_env):
    at = open_page("explore")
    uploader(at).set_value(("broken.png", b"not an image", "image/png")).run()
    assert at.error and "cannot be read" in at.error[0].value
    assert not at.exception


def test_a_pair_with_an_unreadable_picture_says_the_picture_cannot_be_read(app_env):
    """The user gave a picture: the answer must not say none was given, but why it could not be used."""
    from core.io.images import ImageError, decode_image

    at = open_page("explore")
    at.text_area(key="explore_text").input("What a gorgeous sunny day")
    uploader(at).set_value(("holiday.jpg", b"not an image", "image/jpeg"))
    at.run()
    button(at, "explore_analyse").click().run()
    assert not at.exception
    assert at.session_state["explore_result"]["prediction"].source == "text"  # the text is still answered
    notes = [w.value for w in at.warning if "cannot be read" in w.value]
    assert len(notes) == 1 and "holiday.jpg" in notes[0] and "text-only head" in notes[0], [w.value for w in at.warning]
    with pytest.raises(ImageError) as reason:
        decode_image(b"not an image")
    assert str(reason.value) in notes[0]  # the reason, as the upload said it
    assert "No image given" not in texts(at)

    # Without a text there is nothing left to answer: said the same way, not "give an image".
    at.text_area(key="explore_text").input("").run()
    button(at, "explore_analyse").click().run()
    errors = [e.value for e in at.error if "holiday.jpg" in e.value]
    assert errors and "cannot be read" in errors[0], [e.value for e in at.error]


def test_an_example_replaces_an_uploaded_picture_with_its_own(app_env):
    # A picture is uploaded, then an example is chosen: the example's text AND its picture are analysed
    # (not the example's text over the user's picture), and the page says which picture is in use.
    at = open_page("explore")
    mine = png((20, 30, 200))
    uploader(at).set_value(("mine.png", mine, "image/png"))
    at.run()
    example = pick_example(at, "sunny-picnic")
    assert at.text_area(key="explore_text").value == example.text
    assert not uploader(at).value  # the upload was cleared, not left beside the example
    in_use = [c.value for c in at.caption if c.value.startswith("Image in use")]
    assert in_use and example.image_path.name in in_use[0] and "example" in in_use[0], in_use
    button(at, "explore_analyse").click().run()
    result = at.session_state["explore_result"]
    assert result["text"] == example.text
    assert result["image"] == example.image_bytes() and result["image"] != mine
    assert result["image_name"] == example.image_path.name

    # Uploading a picture afterwards uses that picture, and says so.
    uploader(at).set_value(("mine.png", mine, "image/png"))
    at.run()
    in_use = [c.value for c in at.caption if c.value.startswith("Image in use")]
    assert in_use and "mine.png" in in_use[0] and "your upload" in in_use[0], in_use
    button(at, "explore_analyse").click().run()
    assert at.session_state["explore_result"]["image"] == mine


def stale_notices(at) -> list[str]:
    return [w.value for w in at.warning if "This result is for the previous" in w.value and "Analyse** again" in w.value]


def test_a_result_for_other_inputs_is_marked_stale_and_cannot_be_added(app_env):
    sunny = "What a gorgeous sunny day, I love it"
    at = open_page("explore")
    at.text_area(key="explore_text").input(sunny)
    uploader(at).set_value(("sun.png", png((250, 200, 60)), "image/png"))
    at.run()
    button(at, "explore_analyse").click().run()
    assert stale_notices(at) == [] and not button(at, "explore_add").disabled

    # The text changes: the result on screen is for the previous text.
    at.text_area(key="explore_text").input("Terrible day, nothing works").run()
    notices = stale_notices(at)
    assert len(notices) == 1 and "previous text" in notices[0], [w.value for w in at.warning]
    assert button(at, "explore_add").disabled

    # Back to the analysed text (give or take surrounding spaces): the result is current again.
    at.text_area(key="explore_text").input(f"  {sunny}\n").run()
    assert stale_notices(at) == [] and not button(at, "explore_add").disabled

    # The picture is removed: stale again, and nothing reaches the correction set.
    uploader(at).set_value(None)
    at.run()
    notices = stale_notices(at)
    assert len(notices) == 1 and "previous image" in notices[0] and "previous text" not in notices[0], notices
    assert button(at, "explore_add").disabled

    # Analysing what is on screen clears the notice.
    button(at, "explore_analyse").click().run()
    assert stale_notices(at) == []
    assert at.session_state["explore_result"]["image"] is None


def test_removing_an_example_picture_marks_its_result_stale(app_env):
    at = open_page("explore")
    analyse_example(at, "sunny-picnic")
    button(at, "explore_clear_image").click().run()
    notices = stale_notices(at)
    assert len(notices) == 1 and "previous image" in notices[0], [w.value for w in at.warning]
    assert button(at, "explore_add").disabled


def highlight_alphas(html_text: str) -> list[float]:
    return [float(a) for a in re.findall(r"background-color: rgba\(\d+,\d+,\d+,([0-9.]+)\)", html_text)]


def test_word_colours_carry_the_size_of_the_effect_the_same_way_on_every_pair():
    from app.charts import TOKEN_EFFECT_FULL_SCALE, token_effect_html

    # A word that moves the answer by 0.2 points is faint, even when it is the strongest of its text.
    assert highlight_alphas(token_effect_html(["fine"], [0.002])) == [0.01]
    # One that moves it by 30 points is full colour (clipped at the full scale), red when it pushes away.
    strong = token_effect_html(["awful"], [-0.30])
    assert highlight_alphas(strong) == [0.75] and "rgba(214,39,40,0.75)" in strong
    assert highlight_alphas(token_effect_html(["half"], [TOKEN_EFFECT_FULL_SCALE / 2])) == [0.38]
    # The same effect gets the same colour whatever the other words of the text do.
    assert highlight_alphas(token_effect_html(["a", "b"], [0.1, 0.4]))[0] == \
        highlight_alphas(token_effect_html(["a", "b"], [0.1, 0.001]))[0] == 0.3
    assert "&lt;b&gt;" in token_effect_html(["<b>"], [0.0])
    with pytest.raises(ValueError):
        token_effect_html(["a"], [0.1, 0.2])


def test_the_explorer_colours_words_on_the_fixed_scale(app_env):
    from app.charts import TOKEN_EFFECT_FULL_SCALE

    at = open_page("explore")
    analyse_example(at, "conflict-sad-text")
    button(at, "explore_explain").click().run()
    assert not at.exception and not at.error
    explanation = at.session_state["explore_explanation"]
    shown = [h.proto.body for h in at.get("html") if "background-color: rgba" in h.proto.body]
    assert len(shown) == 2  # the text-only and the fused head
    for html_text, head in zip(shown, ("text", "fused")):
        expected = [round(0.75 * min(abs(s) / TOKEN_EFFECT_FULL_SCALE, 1.0), 2)
                    for s in explanation.token_scores[head]]
        assert highlight_alphas(html_text) == pytest.approx(expected, abs=0.006), head
        assert f"{TOKEN_EFFECT_FULL_SCALE * 100:.0f} points" in html_text  # the legend states the scale


DEVELOPER_WORDS = ("Grad-CAM", "fp32", "int8", "conv map", "gradients", "occlusion", "tokens")


def test_the_explanation_speaks_user_words_and_keeps_the_method_in_a_tooltip(app_env):
    at = open_page("explore")
    analyse_example(at, "conflict-sad-text")
    button(at, "explore_explain").click().run()
    assert not at.exception and not at.error
    on_screen = texts(at) + "\n".join(c for image in at.image for c in image.captions)
    assert not [w for w in DEVELOPER_WORDS if w in on_screen], on_screen
    picture = [c for c in at.caption if "Red areas" in c.value]
    assert len(picture) == 1, [c.value for c in at.caption]
    assert "pushed the prediction" in picture[0].value
    assert "Grad-CAM" in picture[0].proto.help  # the method, for those who want it
    timing = next(c for c in at.caption if c.value.startswith("Explained in"))
    assert "leave-one-word-out" in timing.proto.help


def test_the_first_analyse_of_a_server_says_the_model_is_loading(app_env, monkeypatch):
    import contextlib

    import streamlit

    from app import session
    from app_pages.common import _engine

    shown: list[str] = []

    @contextlib.contextmanager
    def spinner(text="", *args, **kwargs):
        shown.append(text)
        yield

    monkeypatch.setattr(streamlit, "spinner", spinner)
    at = open_page("explore")
    # A fresh server: the encoders this page's engine holds have not run a single input yet.
    eng = _engine(*session.engine_key())
    for encoder in (eng.text_encoder, eng.image_encoder):
        monkeypatch.setattr(encoder, "n_encoded", 0)
    import app.warmup
    monkeypatch.setattr(app.warmup, "_USED", type(app.warmup._USED)())

    at.text_area(key="explore_text").input("a first text for this server").run()
    button(at, "explore_analyse").click().run()
    assert not at.exception and not at.error
    loading = "Loading the model (first use on this server, about 10–20 s)…"
    assert [s for s in shown if "first use on this server" in s] == [loading], shown
    shown.clear()
    at.text_area(key="explore_text").input("a second text").run()
    button(at, "explore_analyse").click().run()
    assert shown == ["Analysing…"], shown  # warm now: a plain spinner


def test_every_example_that_promises_a_conflict_shows_one_with_the_shipped_head():
    """The explorer's conflict examples are there to show the notice: with the head users get (the
    shipped default and the encoders its card names), each of them is a modality conflict."""
    from app.examples import example_pairs
    from core import config
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor

    tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    shipped = Predictor.from_card(tensors, card)
    promised = [e for e in example_pairs() if e.id.startswith("conflict-")]
    assert len(promised) == 2
    for example in promised:
        result = shipped.predict_pair(example.text, example.image_path.read_bytes())
        assert result.conflict, (example.id, result.probs)
