"""What the CLI's commands share: table and column arguments, the predictor, reading rows, the progress bar."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_IMAGE_COLUMN = "image"


def add_columns(parser: argparse.ArgumentParser, label_default: str | None) -> None:
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--image-column", default=DEFAULT_IMAGE_COLUMN,
                        help="a CSV without a column of the default name is read as text only")
    parser.add_argument("--label-column", default=label_default)
    parser.add_argument("--id-column", default=None)


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``score`` and ``eval`` share: the CSV, its image folder, the head, the columns."""
    parser.add_argument("--csv", required=True)
    parser.add_argument("--images", default=None, help="folder the image column is relative to (default: the CSV's folder)")
    parser.add_argument("--head", default=None, help="head version id or version folder (default: active)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: $MMSA_DEVICE, else auto)")
    add_columns(parser, "label")


def load_predictor(head: str | None, device: str | None = None):
    """The predictor for ``--head`` (a version id or a version folder; default: the active version)."""
    from core.scoring.predict import load_default_predictor

    if head and Path(head).is_dir():
        return load_default_predictor(head_path=head, device=device)
    return load_default_predictor(version=head, device=device)


def image_column(args, frame) -> str | None:
    """The image column to read: ``--image-column``, or None (text only) when it is the default name and
    the CSV has no such column, so a text-only table is scored rather than refused."""
    wanted = args.image_column
    if wanted == DEFAULT_IMAGE_COLUMN and not any(str(c).strip().lower() == wanted for c in frame.columns):
        return None
    return wanted


def read_rows(args, require_label: bool):
    from core.io.tables import prepare_pairs, read_table

    frame = read_table(Path(args.csv))
    label_column = args.label_column if args.label_column in frame.columns else None
    id_column = args.id_column or ("id" if "id" in frame.columns else None)
    if require_label and label_column is None:
        raise SystemExit(f"error: the CSV has no label column '{args.label_column}' "
                         f"(columns found: {', '.join(frame.columns)})")
    return frame, prepare_pairs(frame, text_column=args.text_column, image_column=image_column(args, frame),
                                label_column=label_column, id_column=id_column,
                                images_root=Path(args.images) if args.images else Path(args.csv).resolve().parent)


class ProgressBar:
    """Scoring progress as a tqdm bar on stderr (rows, errors, rate, ETA); silent when stderr is not a
    terminal, so logs and pipes get only the final summary line."""

    def __init__(self):
        self.bar = None

    def __call__(self, progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit="row", file=sys.stderr, disable=None, dynamic_ncols=True)
        self.bar.set_postfix(errors=progress.errors, refresh=False)
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class RowProgress:
    """The fields ``ProgressBar`` reads, from a distributed run's progress."""

    def __init__(self, done: int, total: int, errors: int):
        self.done, self.total, self.errors = done, total, errors
