"""Runs from what the command line writes: a scored CSV (``score``) and a Ray output folder
(``score --engine ray``). The page saves its scored frame directly with ``save_run``.

Scored CSVs are written formula-safe (a cell starting with = + - @ gets a leading quote, see
``core.io.tables.neutralise_formulas``); reading one back for a run removes that quote again, so a
post starting with "@brand" is searched as the user wrote it. (A cell that itself began with a quote
followed by one of those characters loses its quote: the price of reading the safe file.)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from core.io.tables import FORMULA_STARTS
from core.registry.card import HeadCard
from core.runs.store import Run, RunError, save_run

# Scored text columns that hold None (not "") where there is nothing, as in a frame fresh from the scorer.
_NONE_WHEN_BLANK = ("text", "image", "label", "text_prediction", "image_prediction", "prediction", "prediction_source")


def unquote_formula(value):
    """Undo ``neutralise_formulas`` on one cell."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def restore_scored_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A scored table read back from CSV (every cell text) with the scorer's values again: quotes
    undone, probabilities and confidence as numbers, ``row`` as an integer, blanks as None in the
    scored text columns. Input columns stay text, blank as ""."""
    from core.scoring.batch import FLOAT_COLUMNS

    frame = frame.rename(columns=unquote_formula)
    restored = {}
    for column in frame.columns:
        values = frame[column]
        if column in FLOAT_COLUMNS:
            restored[column] = pd.to_numeric(values.replace("", None), errors="coerce").astype("float64")
        elif column == "row":
            restored[column] = pd.to_numeric(values).astype("int64")
        elif column == "conflict":
            restored[column] = values.astype(str).str.strip().str.lower() == "true"
        else:
            values = values.map(unquote_formula)
            if column in _NONE_WHEN_BLANK:
                values = values.where(values.fillna("") != "", None)
            restored[column] = values
    return pd.DataFrame(restored, columns=list(frame.columns))


def read_scored_csv(path: str | Path) -> pd.DataFrame:
    """The project's own scored CSV (``score --out``) as a scored frame (``restore_scored_frame``)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError) as error:
        raise RunError(f"cannot read the scored file {Path(path).name}: {error}") from None
    return restore_scored_frame(raw)


def save_scored_csv(path: str | Path, *, source: str, card: dict | None = None, image_paths: Sequence | None = None,
                    name: str | None = None) -> Run:
    """Save a finished ``score`` output as a run (``image_paths``: each input row's picture, by row)."""
    frame = read_scored_csv(path)
    paths = None
    if image_paths is not None:
        paths = [image_paths[r] if 0 <= r < len(image_paths) else None for r in frame["row"]]
    return save_run(frame, source=source, engine="cli", name=name, card=card, image_paths=paths)


def save_ray_output(out_dir: str | Path, *, name: str | None = None) -> Run:
    """Save a finished ``score --engine ray`` output folder as a run: its partitions in input order, the
    head named by its manifest, each picture at the images folder the run read it from. An unfinished
    folder is refused (run the same ``score`` command again to finish it)."""
    from core.scoring.distributed import MANIFEST, finished_partitions, read_scored

    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"{out_dir} is not a Ray output folder ({MANIFEST} cannot be read: {error})") from None
    done = finished_partitions(out_dir, manifest["partitions"], manifest["format"])
    if len(done) < manifest["partitions"]:
        raise RunError(f"{out_dir} holds {len(done)} of {manifest['partitions']} partitions: run the same "
                       "`score --engine ray` command again to finish it, then save it")
    frame = read_scored(out_dir)
    if manifest["format"] == "csv":
        frame = restore_scored_frame(frame)
    columns = manifest.get("columns", {})
    root, image_column = columns.get("images_root"), columns.get("image_column")
    paths = None
    if root and image_column:
        # The scorer's own "image" column holds the file name only; the input column keeps sub-folders.
        names = frame[image_column] if image_column in frame.columns and image_column != "image" else frame.get("image")
        if names is not None:
            paths = [str(Path(root) / str(v)) if isinstance(v, str) and v.strip() else None for v in names]
    head = manifest.get("head", {})
    return save_run(frame, source=manifest.get("input", {}).get("name", out_dir.name), engine="ray", name=name,
                    card=_card_of(head), image_paths=paths)


def _card_of(head: dict) -> HeadCard | dict:
    """The card of the head version a manifest names (its encoders), or the little the manifest says."""
    from core.registry import RegistryError

    try:
        from core.scoring.distributed import head_version

        _, card = head_version(head.get("version"))
        if card.version == head.get("version"):
            return card
    except (RegistryError, OSError, ValueError, KeyError):
        pass
    return {"version": head.get("version"), "weights_sha256": head.get("sha256")}
