"""The project's own example pairs (``assets/examples``) and the labelled reference set.

Example pairs fill the explorer's "Try an example" buttons. The reference set the correction page
measures against lives in ``core.heads.reference`` (the CLI uses it too) and is re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import config
from core.heads.reference import ReferenceSet, load_reference_set, reference_source  # noqa: F401
from core.io.tables import read_table


@dataclass(frozen=True)
class ExamplePair:
    id: str
    text: str
    image_path: Path
    label: str
    note: str = ""

    def image_bytes(self) -> bytes:
        return self.image_path.read_bytes()


def examples_csv() -> Path:
    return config.EXAMPLES_DIR / "examples.csv"


def example_pairs() -> list[ExamplePair]:
    """All shipped example pairs, in file order; empty when the folder is missing."""
    path = examples_csv()
    if not path.is_file():
        return []
    frame = read_table(path)
    images = config.EXAMPLES_DIR / "images"
    return [ExamplePair(r["id"], r["text"], images / r["image"], r["label"], r.get("note", ""))
            for r in frame.to_dict("records")]
