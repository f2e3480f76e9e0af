"""How a post is cut into terms for drivers and theme names: words, #hashtags, @mentions and emoji.

    "Flooded AGAIN!! #Flood @CityHall 😡 https://t.co/x"  →  flooded, again, #flood, @cityhall, 😡

Case is ignored (every term is lower-cased); a hashtag or a mention stays whole with its sign, so
``#flood`` and ``flood`` are two terms; web links are dropped; a word has at least two characters and
at least one letter (numbers alone say little about sentiment); each emoji is one term (skin tones and
the invisible joiners are dropped). ``term_kind`` names what a term is, for tables and for the text
search a click on a term starts (``core.analysis.search`` reads the same forms). Markup that is no
one's word is dropped too: the retweet marker ``RT``, HTML entities left in exported text (``&amp;``
→ ``amp``) and links cut short (``http…``); on MVSA they otherwise ranked among the top negative drivers.
"""
from __future__ import annotations

import re

# Emoji blocks: pictographs, emoticons, transport, supplemental symbols, flags, dingbats and the
# miscellaneous symbols (☀ ☔ ♥ ✨ …). One code point is one term.
_EMOJI = ("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\u3030\u303D\u3297\u3299"
          "\u00A9\u00AE\u203C\u2049\u2122\u2139\u2194-\u21AA]")
_NOT_EMOJI_PARTS = re.compile("[\uFE0E\uFE0F\u200D\U0001F3FB-\U0001F3FF]")  # variation selectors, joiner, skin tones
_URL = re.compile(r"\bhttps?\b\S*|\bwww\.\S+", re.IGNORECASE)  # also links cut short ("http…")
_MARKUP = frozenset({"rt", "amp", "quot", "gt", "lt", "nbsp"})
_TERM = re.compile(rf"[#@]\w+|{_EMOJI}|\w+(?:['’]\w+)*")
TERM_KINDS = ("word", "hashtag", "mention", "emoji")


def tokenise(text: object) -> list[str]:
    """The terms of one post, in order, lower-cased (repeats kept); a non-string gives no terms."""
    if not isinstance(text, str) or not text:
        return []
    text = _NOT_EMOJI_PARTS.sub("", _URL.sub(" ", text)).lower().replace("’", "'")
    return [term for term in _TERM.findall(text) if _keep(term)]


def _keep(term: str) -> bool:
    if term[0] in "#@":
        return len(term) > 1
    if len(term) == 1:
        return not term.isalnum() and term != "_"  # an emoji; single letters and digits say little
    return term not in _MARKUP and any(ch.isalpha() for ch in term)


def term_kind(term: str) -> str:
    """'hashtag', 'mention', 'emoji' or 'word'."""
    if term.startswith("#"):
        return "hashtag"
    if term.startswith("@"):
        return "mention"
    if len(term) == 1 and not term.isalnum():
        return "emoji"
    return "word"
