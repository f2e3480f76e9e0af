"""A user's strings shown by the pages: `literal` must make any text read exactly as written."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.formatting import literal, pct

markdown_it = pytest.importorskip("markdown_it")

HOSTILE = ["![x](http://127.0.0.1:9/px.png)", "[click](http://127.0.0.1:9/)", "**bold**", "<b>x</b>.jpg",
           "`code` and ``more``", "`", " padded ", "   ", "http://127.0.0.1:9/auto www.example.com",
           ":tada: :streamlit: :red[red] $x^2$ -- -> \\*", "a :material/home: b :material/", ":material/x",
           "&lt;b&gt; &amp;", "line one\nline two\r\n\r\n    indented", "# heading", "1. list", "> quote"]


def shown(markdown: str) -> str:
    """What a CommonMark renderer shows for ``markdown`` written inside a sentence, asserting it is
    only plain text and code (no link, image, emphasis or HTML)."""
    tokens = markdown_it.MarkdownIt("commonmark").parseInline("Name: " + markdown)[0].children
    kinds = {token.type for token in tokens}
    assert kinds <= {"text", "code_inline"}, (markdown, kinds)
    return "".join(token.content for token in tokens).removeprefix("Name: ")


@pytest.mark.parametrize("text", HOSTILE)
def test_a_users_string_reads_exactly_as_written(text):
    assert shown(literal(text)) == text.replace("\r\n", " ").replace("\n", " ")


@given(st.text(st.characters(exclude_characters="\x00")))  # CommonMark shows NUL as U+FFFD
def test_any_string_reads_as_written(text):
    assert shown(literal(text)) == text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def test_streamlits_icon_syntax_never_reaches_its_rewrite():
    # Streamlit replaces ":material/" in the source before parsing, even inside code spans.
    assert ":material/" not in literal("see :material/home: here")


def test_nothing_to_show_is_nothing():
    assert literal("") == ""


def test_percentages():
    assert pct(0.6934) == "69.3%" and pct(None) == "–" and pct(0.5, 0) == "50%"
