"""Text search over a run's posts, as analysts type it into a social-listening tool.

    rain                 the word "rain" (not "brain"; "Rain", "RAIN" and "#rain" count)
    rain*                words starting with "rain" (rainy, rainbow …)
    "cold rain"          the exact phrase, any spacing between its words
    #flood  @cityhall    that hashtag / that mention, whole (not #flooding)
    -spam                posts without it (any of the forms above)

Every term must match (AND); matching ignores case. Each term becomes one RE2 regular expression
(DuckDB's ``regexp_matches``), always passed to DuckDB as a parameter, never written into the SQL.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InputError

# A "word character" in any script: letters, digits, underscore. Terms match only between non-word
# characters (or the ends of the text), so "rain" is not found inside "brain".
_WORD = r"[\pL\pN_]"
_OUTSIDE = r"(^|[^\pL\pN_])"
_AFTER = r"([^\pL\pN_]|$)"
_QUOTES = {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"'}
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
MAX_TERMS = 20


class SearchError(InputError):
    """The search text cannot be used (too many terms)."""


@dataclass(frozen=True)
class Term:
    """One search term: ``kind`` is word, prefix, phrase, hashtag or mention; ``text`` as typed
    (without the quotes, the ``-`` or the ``*``); ``exclude`` for a ``-term``."""
    kind: str
    text: str
    exclude: bool = False

    @property
    def label(self) -> str:
        """The term as a user would type it again."""
        core = {"phrase": f'"{self.text}"', "prefix": f"{self.text}*"}.get(self.kind, self.text)
        return ("-" if self.exclude else "") + core

    @property
    def pattern(self) -> str:
        """The RE2 pattern that finds the term (case-insensitive, whole words)."""
        if self.kind == "phrase":
            body = r"\s+".join(_escape(word) for word in self.text.split())
        else:
            body = _escape(self.text)
        starts_word = re.match(r"\w", self.text) is not None
        ends_word = re.search(r"\w$", self.text) is not None
        left = _OUTSIDE if starts_word or self.kind in ("hashtag", "mention") else ""
        right = _AFTER if ends_word and self.kind != "prefix" else ""
        return f"(?i){left}{body}{right}"


def _escape(text: str) -> str:
    """``text`` as literal RE2: every ASCII punctuation character backslashed (RE2 reads ``\\#`` as
    ``#``), letters, digits and other scripts as they are."""
    return "".join("\\" + ch if (ch.isascii() and not ch.isalnum() and ch != "_" and not ch.isspace()) else ch
                   for ch in text)


def parse_search(query: str | None) -> list[Term]:
    """The terms of a search text (see the module docstring), in the order typed, duplicates dropped."""
    if not query or not query.strip():
        return []
    for fancy, plain in _QUOTES.items():
        query = query.replace(fancy, plain)
    terms: list[Term] = []
    for match in _TOKEN.finditer(query):
        minus, phrase, bare = match.groups()
        if phrase is not None:
            words = phrase.split()
            if not words:
                continue
            term = Term("phrase" if len(words) > 1 else "word", " ".join(words), exclude=bool(minus))
        else:
            exclude = bare.startswith("-") and len(bare) > 1
            text = bare[1:] if exclude else bare
            term = _bare_term(text, exclude)
            if term is None:
                continue
        if term not in terms:
            terms.append(term)
    if len(terms) > MAX_TERMS:
        raise SearchError(f"{len(terms)} search terms: use at most {MAX_TERMS}")
    return terms


def _bare_term(text: str, exclude: bool) -> Term | None:
    # Punctuation typed around a word ("rain," or "(rain)") is not part of it.
    if text.startswith(("#", "@")) and len(text) > 1:
        kind, body = ("hashtag" if text[0] == "#" else "mention"), text[0] + _strip_punctuation(text[1:])
        return Term(kind, body, exclude) if len(body) > 1 else None
    prefix = text.endswith("*") and len(text.rstrip("*")) > 0
    body = _strip_punctuation(text.rstrip("*"))
    if not body:
        return None
    return Term("prefix" if prefix else "word", body, exclude)


_PUNCTUATION = ".,;:!?()[]{}'\""


def _strip_punctuation(text: str) -> str:
    return text.strip(_PUNCTUATION)
