"""How numbers read on the pages and in the reports."""
from __future__ import annotations


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals ("69.3%"), or "–" when there is none."""
    return "–" if value is None else f"{value * 100:.{digits}f}%"
