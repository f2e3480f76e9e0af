"""Where a page would render a user's string as markup: the Markdown sources an AppTest sees, read by a
CommonMark parser. Code spans are how app.formatting.literal shows a string as written; anything
else that turns into a picture, a link, raw HTML, or shows a user's words outside a code span, is a
leak."""
from __future__ import annotations

import pytest

STRUCTURE = {"image", "link_open", "html_inline", "html_block"}


def page_sources(at) -> list[str]:
    """Every Markdown source on an AppTest page: messages, captions, image captions, metrics, labels."""
    sources = [str(e.value) for kind in ("markdown", "caption", "info", "warning", "success", "error", "title",
                                         "subheader") for e in getattr(at, kind)]
    sources += [c for image in at.image for c in image.captions]
    sources += [str(part) for metric in at.metric for part in (metric.label, metric.value)]
    sources += [e.label for e in at.expander]
    sources += [w.label for kind in ("selectbox", "text_input", "checkbox", "button", "file_uploader")
                for w in getattr(at, kind)]
    return sources


def markup_leaks(sources: list[str], fingerprints: list[str]) -> list[tuple[str, str]]:
    """(source, what) for each source that renders markup, or shows a user's fingerprint outside a
    code span."""
    markdown_it = pytest.importorskip("markdown_it")
    parser = markdown_it.MarkdownIt("commonmark")
    leaks = []
    for source in sources:
        for block in parser.parse(source):
            if block.type in STRUCTURE:
                leaks.append((source, block.type))
            for token in block.children or []:
                if token.type in STRUCTURE:
                    leaks.append((source, token.type))
                elif token.type == "text":
                    leaks += [(source, f) for f in fingerprints if f in token.content]
    return leaks
