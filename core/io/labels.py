"""The three sentiment classes and the one place that turns user spellings into them."""
from __future__ import annotations

import math

from core.errors import InputError

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL_TO_INDEX = {name: i for i, name in enumerate(LABELS)}

# Spellings people actually use in their spreadsheets. Integers follow the common
# 0 = negative, 1 = neutral, 2 = positive convention (TweetEval, MVSA exports).
_ALIASES = {
    "negative": "negative", "neg": "negative", "0": "negative", "bad": "negative",
    "neutral": "neutral", "neu": "neutral", "1": "neutral", "none": "neutral",
    "positive": "positive", "pos": "positive", "2": "positive", "good": "positive",
}
ACCEPTED_SPELLINGS: tuple[str, ...] = tuple(sorted(_ALIASES))


class LabelError(InputError):
    """A label that is none of the accepted spellings."""


def normalise_label(value: object) -> str:
    """Return 'negative' / 'neutral' / 'positive' for any accepted spelling, else raise LabelError."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise LabelError("label is empty; accepted values: " + ", ".join(ACCEPTED_SPELLINGS))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    key = str(value).strip().lower()
    if key.endswith(".0") and key[:-2].isdigit():  # spreadsheets write 2 as "2.0"
        key = key[:-2]
    if key in _ALIASES:
        return _ALIASES[key]
    raise LabelError(f"unknown label {value!r}; accepted values: " + ", ".join(ACCEPTED_SPELLINGS))


HEAD_NAMES = ("text", "image", "fused")  # the three heads, in the order every table and chart shows them
HEAD_LABELS = {"text": "Text only", "image": "Image only", "fused": "Fused"}


def head_label(head: str) -> str:
    """How a head is named to users ("Text only", "Image only", "Fused")."""
    return HEAD_LABELS.get(head, head)
