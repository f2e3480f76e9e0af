"""The two Ray Data stages of a distributed run, each run on the cluster's workers.

1. a task stage (``_CheckPartition``) checks each row with the local rules (``prepare_pairs``: the
   same row numbers, ids and messages) and reads and decodes every picture, so a bad file becomes that
   row's ``status = error`` before it reaches a model; one bad picture never fails a partition;
2. an actor pool (``PartitionScorer``): each actor sets its threads, loads the encoders and the chosen
   head version once, then scores whole partitions with ``core.scoring.batch.score_chunk`` in the local
   engine's chunks of 64 rows and returns each partition as Parquet (or CSV) bytes.

Workers use no SQLite feature store (an in-memory one per partition): SQLite must not be shared over
a network filesystem, and a finished partition is never scored again, so a cache would only pay when
the same picture comes back in another table.
"""
from __future__ import annotations

import io
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from core import config
from core.registry.card import HeadCard

LOCAL_CHUNK = 64       # core.scoring.batch.score_rows' chunk size
SHARED_IMAGES_HINT = ("image paths must be readable by every Ray worker at the same path "
                      "(a shared filesystem, or the same folder copied to each node)")


def check_images_root(images_root: str | None) -> None:
    """OSError naming this node unless ``images_root`` is a folder this process can list and read."""
    if images_root is None:
        return
    if not os.path.isdir(images_root) or not os.access(images_root, os.R_OK | os.X_OK):
        raise OSError(f"the images folder {images_root} is missing or not readable on {socket.gethostname()}: "
                      f"{SHARED_IMAGES_HINT}")


class _CheckPartition:
    """Task stage: a partition's records → checked rows (the local row rules; pictures read and decoded)."""

    def __init__(self, columns: dict, images_root: str | None, id_counts: dict, draft_size):
        self.columns, self.images_root, self.draft_size = columns, images_root, draft_size
        self.id_counts = Counter(id_counts)

    def __call__(self, batch: dict) -> dict:
        check_images_root(self.images_root)
        checked = [self.check(int(first), records) for first, records in zip(batch["first"], batch["records"])]
        return {"part": batch["part"], "first": batch["first"], "records": batch["records"],
                "rows": [json.dumps(rows) for rows in checked]}

    def check(self, first: int, records: str) -> list[dict]:
        from core.io.images import decode_image, read_image_bytes
        from core.io.tables import prepare_pairs

        frame = _records_frame(records)
        rows = prepare_pairs(frame, **self.columns, first_row=first, id_counts=self.id_counts,
                             images_root=None if self.images_root is None else Path(self.images_root))
        out = []
        for row in rows:
            if row.ok and row.image_path is not None:
                # The same calls, so the same messages, as core.features.pipeline for a file that will not
                # read or decode; the actor never sees such a picture.
                try:
                    decode_image(read_image_bytes(row.image_path), draft_size=self.draft_size)
                except (OSError, ValueError) as exc:
                    row.error = str(exc)
            out.append({"row": row.row, "id": row.id, "text": row.text, "label": row.label, "error": row.error,
                        "warnings": row.warnings, "text_cell": row.text_cell, "image_cell": row.image_cell,
                        "image_path": None if row.image_path is None else str(row.image_path)})
        return out


class PartitionScorer:
    """Actor stage: loads the encoders and the head once, then scores whole partitions."""

    def __init__(self, head_bytes: bytes, card: HeadCard, threads: int, images_root: str | None, fmt: str):
        threads = max(1, int(threads))
        # Each actor runs its torch and ONNX Runtime work on the CPUs Ray gave it, not on every core.
        config.set_ort_threads(threads)
        from safetensors.torch import load as load_tensors

        from core.features.store import FeatureStore
        from core.scoring.predict import Predictor
        from core.threads import start_torch_threads

        start_torch_threads(threads)  # this actor's process, once
        check_images_root(images_root)
        self.fmt = fmt
        self.predictor = Predictor.from_card(load_tensors(head_bytes), card, FeatureStore(None))

    def __call__(self, batch: dict) -> dict:
        out = {"part": [], "rows": [], "errors": [], "data": [], "seconds": []}
        for part, first, records, rows in zip(batch["part"], batch["first"], batch["records"], batch["rows"]):
            started = time.perf_counter()
            frame = self.score(int(first), records, json.loads(rows))
            out["part"].append(int(part))
            out["rows"].append(len(frame))
            out["errors"].append(int((frame["status"] == "error").sum()))
            out["data"].append(_to_bytes(frame, self.fmt))
            out["seconds"].append(time.perf_counter() - started)
        return out

    def score(self, first: int, records: str, checked: list[dict]) -> pd.DataFrame:
        """One partition: scored columns, then every input column, for its rows."""
        from core.features.store import FeatureStore
        from core.io.tables import PairRow
        from core.scoring.batch import score_chunk
        from core.scoring.output import with_input_columns

        rows = [PairRow(row=r["row"], id=r["id"], text=r["text"], label=r["label"], error=r["error"],
                        warnings=list(r["warnings"]), text_cell=r["text_cell"], image_cell=r["image_cell"],
                        image_path=None if r["image_path"] is None else Path(r["image_path"])) for r in checked]
        # A fresh in-memory store per partition: repeats inside it are encoded once, memory stays flat.
        self.predictor.store = FeatureStore(None)
        scored = pd.concat([score_chunk(rows[s:s + LOCAL_CHUNK], self.predictor)
                            for s in range(0, len(rows), LOCAL_CHUNK)], ignore_index=True)
        inputs = _records_frame(records)
        local = with_input_columns(scored.assign(row=scored["row"] - first), inputs)
        return local.assign(row=scored["row"].to_numpy())


def _records_frame(records: str) -> pd.DataFrame:
    """A partition's input cells back from JSON exactly as read: every cell text (no number or date guessing,
    so "007" and a column named created_at stay as they were)."""
    return pd.read_json(io.StringIO(records), orient="split", dtype=False, convert_dates=False,
                        keep_default_dates=False)


def _to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """A scored partition as the bytes of its file (Parquet, or a CSV safe to open)."""
    if fmt == "csv":
        from core.io.tables import to_safe_csv_bytes

        return to_safe_csv_bytes(frame)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def serialise_head(tensors: dict) -> bytes:
    """A head version's tensors as safetensors bytes, the form every actor receives and loads."""
    from safetensors.torch import save

    return save({name: tensor.contiguous() for name, tensor in tensors.items()})


def image_draft_size(card: HeadCard):
    """The JPEG draft size of the image encoder the card names (what its own ``decode`` uses)."""
    from core.encoders.image import IMAGE_SPECS, ImageEncoder

    loader = IMAGE_SPECS.get(card.image_encoder.spec)
    return tuple(getattr(loader, "draft_size", ImageEncoder.draft_size))


def check_partition(batch: dict, *, columns: dict, images_root: str | None, id_counts: dict,
                    draft_size) -> dict:
    """The task stage as Ray calls it: one batch of partitions' records → the same with their checked rows."""
    return _CheckPartition(columns, images_root, id_counts, draft_size)(batch)
