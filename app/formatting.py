"""How numbers and a user's strings read on the pages and in the reports."""
from __future__ import annotations

import re

# Streamlit rewrites every ":material/" in a Markdown source into its icon syntax before parsing,
# even inside code; written as an entity outside the code span, the colon stays a colon.
_MATERIAL = ":material/"
_COLON = "&#58;"
_LINE_BREAK = re.compile(r"\r\n?|\n")


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals ("69.3%"), or "–" when there is none."""
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def literal(text: object) -> str:
    """``text`` as Markdown that Streamlit shows exactly as written: for a user's text, a file or
    column name, a version note or an error message quoting them, inside st.markdown / st.caption /
    st.info / st.warning / st.error / st.success, an image caption, a metric or a widget label.

    Backslash escapes are not enough there: Streamlit turns web addresses into links, ``:tada:``
    into emoji and ``--`` into a dash after the escapes are resolved. All of them leave a code span
    alone, so the text goes into one, fenced by more backticks than it holds and padded by a space
    the parser takes off again. Line breaks become spaces (a code span shows them so anyway; a blank
    line would end it)."""
    text = _LINE_BREAK.sub(" ", str(text))
    first, *rest = text.split(_MATERIAL)
    return _code_span(first) + "".join(_COLON + _code_span(_MATERIAL[1:] + part) for part in rest)


def _code_span(text: str) -> str:
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.strip(" ") else ""  # CommonMark strips one space each side unless all are spaces
    return f"{fence}{pad}{text}{pad}{fence}"
