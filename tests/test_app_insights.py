"""The analysis page's Drivers, Themes and Compare versions views driven with AppTest over saved runs with
planted effects: the planted hashtag tops the negative drivers and a click on it filters the page, two
brands side by side, themes found once and kept (a copied post in one theme, "no theme" named as such),
two versions that differ on known rows counted exactly with their changed posts openable in Explore,
the Correct page's link preselecting its candidate; user text stays text. No model is loaded."""
from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.insights.run_themes import themes_folder
from core.registry import open_registry
from core.runs import save_run
from tests.conftest import STREAMLIT_APP, button, fake_card, texts
from tests.planted_insights import B_CHANGES, COPIES, HASHTAG, HASHTAG_POSTS, hashtag_run, topic_run, two_version_run

HOSTILE = "**bold** [link](http://evil.example) <b>html</b> :tada:"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MMSA_OPERATOR_PASSWORD_HASH", raising=False)
    return tmp_path / "home"


def open_analysis(query_params: dict) -> AppTest:
    at = AppTest.from_file(str(STREAMLIT_APP), default_timeout=60)
    for key, value in query_params.items():
        at.query_params[key] = value
    at.switch_page("app_pages/analyse.py")
    at.run()
    assert not at.exception, at.exception
    return at


def shown_text(at) -> str:
    return "\n".join(t.value for t in at.text)


def table_with(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def url(at, key: str) -> list[str]:
    """The values of one parameter of the page's address."""
    value = at.query_params[key]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_planted_hashtag_tops_the_negative_drivers_and_a_click_filters_the_page(home):
    run, _ = hashtag_run()
    at = open_analysis({"run": run.id})
    assert at.radio(key="analyse_insight").value == "drivers"
    assert "negative · " in shown_text(at)
    negative = table_with(at, "example post")
    assert (negative.iloc[0]["term"], negative.iloc[0]["posts"]) == (HASHTAG.lower(), HASHTAG_POSTS)
    assert HASHTAG in negative.iloc[0]["example post"]                       # an example post, in the table
    assert negative.iloc[0]["example post"] in shown_text(at)                # and listed as text
    pills = at.pills(key="drivers_term::0")
    assert pills.options[0].endswith(f"{HASHTAG.lower()} `")                 # shown as written (a code span)
    pills.set_value(HASHTAG.lower()).run()
    assert not at.exception, at.exception
    assert at.text_input(key="analyse_search").value == HASHTAG.lower()
    assert metric(at, "Posts") == f"{HASHTAG_POSTS:,}"
    assert url(at, "q") == [HASHTAG.lower()]


def test_user_text_in_drivers_is_text_never_markdown(home):
    run, tagged = hashtag_run(n=600)
    frame = pd.read_parquet(run.rows_path)
    frame.loc[frame["row"] == tagged[0], ["text", "confidence"]] = [f"{HOSTILE} {HASHTAG}", 1.0]  # an example first
    frame.loc[frame["brand"] == "Acme", "brand"] = "<script>alert(1)</script>"
    hostile = save_run(frame.drop(columns=["image_path"], errors="ignore"), source="hostile.csv", engine="cli",
                       name="hostile", card=fake_card(version="scorer"))
    at = open_analysis({"run": hostile.id})
    assert f"{HOSTILE} {HASHTAG}" in "\n".join(t.value for t in at.text)
    markdown = texts(at)
    for user_text in ("[link](http://evil.example)", "<script>", ":tada:"):
        assert user_text not in markdown
    # Two values of a column side by side: the slices are named by the user's values, as text.
    at.radio(key="drivers_of").set_value("values").run()
    at.selectbox(key="drivers_column").set_value("brand").run()
    at.selectbox(key="drivers_a").set_value("<script>alert(1)</script>").run()
    assert not at.exception, at.exception
    assert any(t.value.startswith("<script>alert(1)</script> · ") for t in at.text)
    assert "<script>" not in texts(at)


def test_themes_are_found_once_kept_with_the_run_and_follow_the_filters(home):
    run, copies = topic_run()
    at = open_analysis({"run": run.id, "view": "themes"})
    assert at.radio(key="analyse_insight").value == "themes"
    button(at, "themes_find").click().run()
    assert not at.exception, at.exception
    table = table_with(at, "top terms")
    assert table["posts"].sum() == run.record.scored
    assert (themes_folder(run) / "themes.json").is_file()
    copied = table[table["top terms"].str.startswith("#skyfail")]
    assert len(copied) == 1 and copied.iloc[0]["posts"] >= COPIES
    if (table["theme"] == "no theme").any():
        assert table.iloc[-1]["theme"] == "no theme"
    assert len(at.get("plotly_chart")) >= 3                                   # breakdown, themes, trend …
    # A new visit finds them kept; a search counts them over its posts only.
    at = open_analysis({"run": run.id, "view": "themes", "q": "#skyfail"})
    assert not [b for b in at.button if b.key == "themes_find"]
    table = table_with(at, "top terms")
    assert table["posts"].tolist() == [COPIES]


def test_two_versions_counted_exactly_with_changed_posts_openable_in_explore(home):
    run, a_tensors, b_tensors, classes = two_version_run()
    registry = open_registry()
    a, b = registry.save(a_tensors, fake_card(), note="A"), registry.save(b_tensors, fake_card(), note="B")
    # The Correct page's link: the candidate preselected, the comparison view open.
    at = open_analysis({"run": run.id, "compare": b})
    assert at.radio(key="analyse_insight").value == "compare" and at.selectbox(key="compare_b").value == b
    at.selectbox(key="compare_a").set_value(a).run()
    button(at, "compare_go").click().run()
    assert not at.exception, at.exception
    n = len(classes)
    assert metric(at, "Posts compared") == f"{n:,}" and metric(at, "Changed class") == f"{len(B_CHANGES)}"
    assert metric(at, "Accuracy of A") == f"{(n - 6) / n * 100:.1f} %"
    assert metric(at, "Accuracy of B") == f"{(n - 4) / n * 100:.1f} %"
    assert "McNemar's test (exact binomial): A right where B is wrong on 4 posts, the reverse on 6; p = 0.7539" \
        in shown_text(at)
    matrix = table_with(at, "B: positive")
    assert matrix.loc["A: negative", "B: positive"] == 6 and matrix.loc["A: positive", "B: neutral"] == 4
    changed = table_with(at, "version B")
    assert sorted(changed["row"]) == sorted(B_CHANGES)
    at.selectbox(key="compare_change").set_value("negative → positive").run()
    changed = table_with(at, "version B")
    assert len(changed) == 6 and set(changed["version B"]) == {"positive"}
    link = next(p for p in at.get("page_link") if "in Explore" in p.proto.label)
    assert link.proto.page == "explore"
    assert link.proto.query_string == f"run={run.id}&row={changed['row'].iloc[0]}"
    assert url(at, "compare") == [b] and url(at, "view") == ["compare"]
