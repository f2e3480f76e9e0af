"""A user's texts, file names, column names and version notes are data: every page shows them as
written, never as Markdown or HTML (a tweet holding a picture's address must not make every viewer's
browser fetch it). tests/test_browser_e2e.py checks the same in a real browser."""
from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from app.formatting import literal

from .conftest import button, open_page
from .markup import markup_leaks, page_sources

# Each one would render as something else in Markdown; each carries a word to look for.
PIXEL = "![pixelword](http://127.0.0.1:9/px.png)"
LINK = "[clickword](http://127.0.0.1:9/)"
BOLD = "**boldword**"
TAG = "<b>tagword</b>"
BARE = "see http://127.0.0.1:9/bareword"
HOSTILE = [PIXEL, LINK, BOLD, TAG, BARE]
FINGERPRINTS = ["pixelword", "px.png", "clickword", "boldword", "tagword", "bareword", "127.0.0.1"]
COLUMN = "**note** <b>colword</b>"
PICTURE = "**picword** <i>x.png"  # no "/": a browser sends a file's own name, never a path


def png(colour=(250, 200, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_shown_as_written(at, fingerprints=FINGERPRINTS + ["colword", "picword"]) -> None:
    assert not at.exception, at.exception
    leaks = markup_leaks(page_sources(at), fingerprints)
    assert not leaks, leaks


def test_batch_shows_hostile_posts_names_and_columns_as_text(app_env):
    rows = pd.DataFrame({"id": [f"p{k}" for k in range(len(HOSTILE))], "text": HOSTILE,
                         "image": [PICTURE] * len(HOSTILE), COLUMN: ["x"] * len(HOSTILE)})
    rows.loc[len(rows)] = {"id": "gone", "text": "fine", "image": "![gone](http://127.0.0.1:9/px.png).png", COLUMN: ""}
    table_name = "**tableword** <b>x</b>.csv"
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value((table_name, rows.to_csv(index=False).encode(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    at.file_uploader(key="batch_images_files").set_value(
        [(PICTURE, png(), "image/png"), ("../**escapeword**.png", png(), "image/png")]).run()
    columns_caption = next(c.value for c in at.caption if "columns:" in c.value)
    assert literal(COLUMN) in columns_caption
    assert any("escapeword" in w.value for w in at.warning), [w.value for w in at.warning]  # skipped, said so
    button(at, "batch_score").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any(literal(table_name) in c.value for c in at.caption)

    # "Label where it pays" lists every scored post: its words as plain text, its picture's name literal.
    at.slider(key="batch_al_n").set_value(len(HOSTILE)).run()
    shown = [t.value for t in at.text]
    assert sorted(shown) == sorted(HOSTILE), shown
    assert sum(literal(PICTURE) in c.value for c in at.caption) == len(HOSTILE)
    assert_shown_as_written(at, FINGERPRINTS + ["colword", "picword", "tableword", "escapeword"])


def test_explore_shows_a_hostile_file_name_as_written(app_env):
    at = open_page("explore")
    next(u for u in at.file_uploader if u.key.startswith("explore_upload")).set_value((PICTURE, png(), "image/png"))
    at.run()
    assert at.image[0].captions == [literal(PICTURE)]
    assert any(literal(PICTURE) in c.value for c in at.caption if c.value.startswith("Image in use"))
    assert_shown_as_written(at)

    # An unreadable picture under a hostile name: the answer says it cannot be read, naming it as written.
    next(u for u in at.file_uploader if u.key.startswith("explore_upload")).set_value(
        (PIXEL + ".png", b"not a picture", "image/png"))
    at.text_area(key="explore_text").input("a fine day").run()
    button(at, "explore_analyse").click().run()
    assert any(literal(PIXEL + ".png") in w.value for w in at.warning), [w.value for w in at.warning]
    assert_shown_as_written(at)


def test_the_explanation_colours_a_hostile_text_as_plain_words(app_env):
    at = open_page("explore")
    at.text_area(key="explore_text").input(f"{PIXEL} lovely {BOLD}").run()
    button(at, "explore_analyse").click().run()
    button(at, "explore_explain").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    bodies = [h.proto.body for h in at.get("html")]
    assert bodies and all("pixelword" in body for body in bodies)  # an HTML element: no Markdown runs on it
    assert not [m.value for m in at.markdown if "pixelword" in m.value]
    assert_shown_as_written(at)


def test_correct_lists_the_rows_left_out_with_their_names_as_written(app_env, tmp_path):
    table = pd.DataFrame({"text": HOSTILE, "image": [f"{PIXEL}.png"] * len(HOSTILE), "label": "positive"})
    at = open_page("correct")
    at.file_uploader(key="correct_csv").set_value(("pairs.csv", table.to_csv(index=False).encode(), "text/csv"))
    at.file_uploader(key="correct_images").set_value([("real.png", png(), "image/png")]).run()
    button(at, "correct_add_upload").click().run()
    left_out = next(e for e in at.expander if "left out" in e.label)
    listed = left_out.markdown[0].value.splitlines()
    assert len(listed) == len(HOSTILE) and all(PIXEL in line for line in listed), listed
    assert_shown_as_written(at)

    at.file_uploader(key="correct_csv").set_value(("cols.csv", f'"{COLUMN}"\n1\n'.encode(), "text/csv")).run()
    button(at, "correct_add_upload").click().run()
    assert at.error and "colword" in at.error[0].value
    assert_shown_as_written(at)


def test_home_shows_a_version_note_as_written(app_env, tmp_path, monkeypatch):
    from core.registry import open_registry

    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    registry = open_registry()
    tensors, card = registry.load(registry.active_version())
    note = f"{PIXEL} {BOLD} {TAG}"
    version = registry.save({name: t + 0.01 for name, t in tensors.items()}, card, note=note)
    registry.activate(version)
    at = open_page("home")
    assert any(literal(note) in c.value for c in at.caption), [c.value for c in at.caption]
    assert_shown_as_written(at)


def test_an_account_name_in_the_role_line_is_shown_as_written():
    from app_pages.common import _why
    from core.access import Actor, Role

    email = f"{BOLD}@example.com"
    viewer = Actor(email, Role.VIEWER, f"{email} is not a listed operator account")
    assert _why(viewer) == f"{literal(email)} is not a listed operator account"
    operator = Actor("operator", Role.OPERATOR, "signed in with the operator password")
    assert _why(operator) == "signed in with the operator password"  # the program's own words stay Markdown
