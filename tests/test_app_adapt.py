"""The Correct page's adaptation mode driven with AppTest: a labelled CSV of one's own posts (no image
column at all) is adapted to, the held-out figures, learning curve and reference are shown, the
result is saved as a version; a viewer saves but cannot activate; a bad table says why as plain text."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from core.access import hash_password

from .conftest import NEGATIVE_TEXTS, NEUTRAL_TEXTS, POSITIVE_TEXTS, button, open_page, texts


@pytest.fixture()
def fresh_home(app_env, tmp_path, monkeypatch):
    """A registry of its own for one test; the fixture head stays builtin."""
    home = tmp_path / "home"
    monkeypatch.setenv("MMSA_HOME", str(home))
    return home


def posts_csv(per_label: int = 8, extra: list[dict] | None = None) -> bytes:
    rows = [{"text": f"{text} (post {k})", "label": label}
            for label, options in (("positive", POSITIVE_TEXTS), ("negative", NEGATIVE_TEXTS),
                                   ("neutral", NEUTRAL_TEXTS))
            for k, text in enumerate((options * per_label)[:per_label])]
    return pd.DataFrame(rows + (extra or [])).to_csv(index=False).encode()


def adapt(at, data: bytes):
    at.file_uploader(key="adapt_csv").set_value(("our posts.csv", data, "text/csv")).run()
    button(at, "adapt_run").click().run()
    assert not at.exception, at.exception


def test_adapting_to_a_text_only_csv_shows_honest_figures_and_saves_a_version(fresh_home):
    from core.registry import open_registry

    at = open_page("correct")
    active = open_registry().active_version()
    adapt(at, posts_csv(extra=[{"text": "", "label": "positive"}]))
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert "Your held-out posts, adapted" in metrics
    shown = texts(at)
    assert "24 labelled posts (none with a picture" in shown and "5-fold cross-validation" in shown
    assert "95% interval" in shown
    assert any("than the version it adapts" in message.value for message in (*at.success, *at.info, *at.warning))
    assert any(message.value.split(":")[0] in {"Yes", "Little", "Unclear"} for message in at.info)
    tables = [frame.value for frame in at.dataframe]
    assert any(list(t.columns) == ["Branch", "before", "after", "change (points)"] for t in tables)
    assert any("left out" in t.columns and t["left out"].str.contains("row 26").any() for t in tables)
    assert len(at.get("plotly_chart")) >= 1

    at.text_input(key="adapt_note").input("our posts").run()
    button(at, "adapt_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "Saved version" in texts(at)
    registry = open_registry()
    saved = [c for c in registry.versions() if c.get("note") == "our posts"]
    assert len(saved) == 1 and saved[0]["training"]["kind"] == "adaptation"
    assert registry.active_version() == active  # saving serves nobody until it is activated
    # What was saved is the adapted text head; without pictures the image and fused heads are the parent's.
    saved_tensors, parent_tensors = registry.load(saved[0]["version"])[0], registry.load(active)[0]
    assert {name.split(".")[1] for name, tensor in saved_tensors.items()
            if name.startswith("heads.") and not torch.equal(tensor, parent_tensors[name])} == {"text"}
    assert at.selectbox(key="correct_version").value == saved[0]["version"]  # the version list selects it


def test_an_operator_may_activate_the_adaptation_on_saving(fresh_home):
    from core.registry import open_registry

    at = open_page("correct")
    adapt(at, posts_csv())
    at.checkbox(key="adapt_activate_now").check().run()
    button(at, "adapt_save").click().run()
    assert "made it active for everyone" in texts(at)
    assert open_registry().card(open_registry().active_version()).training["kind"] == "adaptation"


def test_a_viewer_adapts_and_saves_but_cannot_activate(fresh_home, monkeypatch):
    monkeypatch.setenv("MMSA_OPERATOR_PASSWORD_HASH", hash_password("a long operator password"))
    at = open_page("correct")
    adapt(at, posts_csv())
    assert at.checkbox(key="adapt_activate_now").disabled
    button(at, "adapt_save").click().run()
    assert "an operator activates it" in texts(at)


def test_a_table_that_cannot_be_used_says_why_as_plain_text(fresh_home):
    at = open_page("correct")
    adapt(at, b"caption,**label**\nhello,positive\n")
    assert [e.value for e in at.error] == ["This set cannot be used for an adaptation:"]
    assert any("missing column" in t.value and "**label**" in t.value for t in at.text)
    assert not any(m.label == "Your held-out posts, adapted" for m in at.metric)
