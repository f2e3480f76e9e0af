"""Which head answers a pair: the fused head when it has its two inputs, else the text-only head, else the
image-only head. The one rule for the explorer's single pair (``Predictor.predict_pair``) and for batch
scoring (``core.scoring.batch``): a row's ``prediction``, ``confidence`` and ``prediction_source`` come
from the head it names."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Most informed first: the fused head sees both the text and the picture.
ANSWER_ORDER = ("fused", "text", "image")


def answering_heads(usable: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per row, the name of the head that answers (an object array; None where no head can): ``usable``
    maps each head to a boolean array, True where that head has probabilities for the row."""
    n = len(np.asarray(usable[ANSWER_ORDER[0]]))
    source = np.full(n, None, dtype=object)
    for head in reversed(ANSWER_ORDER):  # the last one written wins: the first of ANSWER_ORDER
        source[np.asarray(usable[head], dtype=bool)] = head
    return source
