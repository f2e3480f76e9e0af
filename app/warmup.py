"""Whether an Analyse is the first one this server process runs through an encoder.

The first input through an encoder pays one-off costs (the ONNX Runtime graph is exported and
opened, weights are paged in): on a fresh server the first Analyse takes seconds where later ones
take milliseconds, and the page says why while it waits. No Streamlit here.
"""
from __future__ import annotations

import weakref

# Encoders that have scored an input in this process (weak: an encoder that is dropped is forgotten).
_USED: weakref.WeakSet = weakref.WeakSet()


def _needed(predictor, text: str | None, image) -> list:
    needed = []
    if isinstance(text, str) and text.strip():
        needed.append(predictor.text_encoder)
    if image is not None:
        needed.append(predictor.image_encoder)
    return needed


def first_use(predictor, text: str | None, image) -> bool:
    """True when an encoder this pair needs has not encoded anything in this process yet."""
    return any(getattr(encoder, "n_encoded", 0) == 0 and encoder not in _USED
               for encoder in _needed(predictor, text, image))


def mark_used(predictor, text: str | None, image) -> None:
    """Record that the encoders this pair needed have run (a feature-store hit leaves ``n_encoded``
    at 0 yet costs nothing, so the counter alone would keep announcing a first use)."""
    for encoder in _needed(predictor, text, image):
        _USED.add(encoder)
