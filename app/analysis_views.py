"""Helpers of the analysis and runs pages that need no Streamlit: the page's URL (run, views and
filters in one query string), gallery thumbnails, the HTML report of the views, and the downloads."""
from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from core.analysis import Filters
from core.io.labels import LABELS
from core.registry.card import HeadCard

THUMBNAIL_PX = 220
PAGE_KEYS = ("run", "by", "over", "freq", "view", "compare")   # the page's own query parameters, beside the filters'
FREQ_NAMES = {"D": "day", "W": "week", "M": "month"}
BLANK_LABEL = "(blank)"


def page_params(run_id: str, filters: Filters, *, by: str | None, over: str | None, freq: str,
                view: str | None = None, compare: str | None = None) -> dict:
    """The query string that opens the page on this run, these views and these filters; ``view``: the
    "Why, and which version" view shown (drivers, themes, compare), ``compare``: its candidate version."""
    params: dict[str, str | list[str]] = {"run": run_id}
    if by:
        params["by"] = by
    if over:
        params["over"] = over
        params["freq"] = freq
    if view:
        params["view"] = view
    if view == "compare" and compare:
        params["compare"] = compare
    params.update(filters.to_query_params())
    return params


def normalise_params(params) -> dict[str, list[str]]:
    """Query parameters as ``{key: [values]}`` whatever form they came in (Streamlit's, a dict)."""
    if hasattr(params, "get_all"):
        return {key: list(params.get_all(key)) for key in params}
    return {key: [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            for key, value in dict(params).items()}


def value_label(value) -> str:
    """How a column value reads in a filter list: the value, or "(blank)" for blank cells."""
    return BLANK_LABEL if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def value_from_label(label: str) -> str | None:
    return None if label == BLANK_LABEL else label


@functools.lru_cache(maxsize=2048)
def _thumbnail(path: str, mtime_ns: int, px: int) -> bytes | None:
    from core.io.images import ImageError, decode_image, read_image_bytes

    try:
        picture = decode_image(read_image_bytes(Path(path)), draft_size=(px, px))
    except (ImageError, OSError, ValueError):
        return None
    picture.thumbnail((px, px))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def thumbnail(path: Path | None, px: int = THUMBNAIL_PX) -> bytes | None:
    """A small JPEG of the picture at ``path`` (made once per file and size), or None when it is gone
    or cannot be read."""
    if path is None:
        return None
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return None
    return _thumbnail(str(path), mtime, px)


def summary_counts(summary, total: int) -> dict:
    """The report's headline: posts analysed of the scored posts, and each class's share."""
    counts = {"Posts analysed": summary.n, "Scored posts in the run": total}
    for c in LABELS:
        counts[f"{c} posts"] = summary.counts[c]
    return counts


def report_html(run, filters: Filters, summary, total: int, figures: dict, tables: dict) -> str:
    """The HTML report of the views on screen, for the current filters (``app.batch_report.html_report``)."""
    from app.batch_report import html_report

    notes = [f"Run: {run.name} ({run.id}), scored from {run.record.source} with head version "
             f"{run.record.head_version or 'unknown'}."]
    notes += ["Filters: " + "; ".join(filters.describe())] if not filters.is_empty else ["Filters: none (every post)."]
    notes.append("Shares carry Wilson 95 % intervals; net sentiment (positive − negative share, in points) "
                 "Newcombe's 95 % interval; unusual periods: chi-square per period, Holm-corrected (docs/analysis.md).")
    return html_report(f"Analysis of {run.name}", figures, None, summary_counts(summary, total), notes=notes,
                       tables=tables)


def filtered_csv(query, filters: Filters, columns: list[str]) -> bytes:
    """The filtered posts with the run's columns, as the formula-safe CSV every download is."""
    from core.analysis.sql import quote_identifier
    from core.io.tables import to_safe_csv_bytes

    where = query.where(filters)
    selected = ", ".join(quote_identifier(c) for c in columns)
    return to_safe_csv_bytes(query.frame(f"SELECT {selected} FROM rows WHERE {where.sql} ORDER BY row", where.params))


def table_csv(table: pd.DataFrame) -> bytes:
    """A view's table as a formula-safe CSV."""
    from core.io.tables import to_safe_csv_bytes

    return to_safe_csv_bytes(table)


def figure_html(figure) -> bytes:
    """One chart as a self-contained, interactive HTML file."""
    return figure.to_html(full_html=True, include_plotlyjs=True).encode("utf-8")


def file_stem(name: str) -> str:
    """A file-name-safe stem from a run name."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "run"


def save_batch_run(batch: dict, card: HeadCard | Mapping, *, copy_pictures: bool) -> tuple[str | None, str | None]:
    """Save a finished scoring of the batch page as a run, once per job (``batch["run"]``, the page's job
    key): (run id, None), or (None, why it could not be saved). Pictures from an upload live in a
    temporary folder: ``copy_pictures`` keeps a copy with the run."""
    from core.runs import RunError, find_job, save_run
    from core.scoring.output import with_input_columns

    if batch.get("analysis_run"):
        return batch["analysis_run"], None
    saved = find_job(batch["run"]) if batch.get("run") else None
    if saved is None:
        version = card.version if isinstance(card, HeadCard) else card.get("version")
        if version != batch.get("version"):  # the active version changed since: keep what is known
            card = {"version": batch.get("version")}
        by_row = {row.row: row for row in batch["rows"]}
        frame = batch["result"].frame
        paths = [None if by_row.get(r) is None or by_row[r].image_path is None else str(by_row[r].image_path)
                 for r in frame["row"]]
        try:
            saved = save_run(with_input_columns(frame, batch["table"]), source=batch["name"], engine="page",
                             card=card, image_paths=paths, copy_images=copy_pictures, job=batch.get("run")).record
        except (RunError, OSError) as error:
            return None, str(error)
    batch["analysis_run"] = saved.id
    return saved.id, None
