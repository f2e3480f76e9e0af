"""Saved runs: every scoring (the batch page, ``score``, a ``score --engine ray`` output folder) kept
under ``$MMSA_HOME/runs/<id>/`` so it can be analysed later without scoring anything again.

A run folder holds ``rows.parquet`` (every scored column, then every input column, plus the stored
path of each row's picture) and ``run.json`` (``core.runs.record.RunRecord``). A run is written in a
hidden temporary folder and renamed into place, so a crash never leaves half a run; ``run.json`` is
replaced atomically when the run is renamed. Nothing here is a pickle: Parquet and JSON only.

Run ids are safe folder names (lower-case letters, digits and dashes): the creation time, a slug of
the name and a random suffix, e.g. ``20240305-101500-brand-posts-3f9a``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from core import config
from core.errors import InputError
from core.registry.card import HeadCard
from core.runs.record import ColumnRoles, RunRecord

log = logging.getLogger(__name__)

RUNS_FOLDER = "runs"
ROWS_FILE = "rows.parquet"
RECORD_FILE = "run.json"
IMAGES_FOLDER = "images"
ROW_GROUP_ROWS = 100_000  # several row groups per big run: DuckDB reads them in parallel
MAX_NAME_CHARS = 120
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
ENGINES = ("page", "cli", "ray")


class RunError(InputError):
    """A run cannot be saved, found or changed as asked; the message says why."""


class RunNotFound(RunError, LookupError):
    """No saved run has this id."""


@dataclass
class Run:
    """A saved run: its record and its folder (``rows_path`` is the Parquet file of its rows)."""
    record: RunRecord
    folder: Path

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def rows_path(self) -> Path:
        return self.folder / ROWS_FILE


def runs_root() -> Path:
    """The folder that holds every run (created if missing)."""
    root = config.home_dir() / RUNS_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    return root


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a well-formed run id (a plain folder name), else RunNotFound."""
    if not isinstance(run_id, str) or not _ID.fullmatch(run_id):
        raise RunNotFound(f"no run {str(run_id)[:80]!r}: a run id is made of lower-case letters, digits and dashes "
                          "(`python -m core.cli runs list` shows them)")
    return run_id


def clean_name(name: str | None, fallback: str = "run") -> str:
    """A run name as stored: one line, surrounding spaces dropped, at most MAX_NAME_CHARS characters."""
    text = " ".join(str(name or "").split())[:MAX_NAME_CHARS]
    return text or fallback


def new_run_id(name: str, created: datetime) -> str:
    """A fresh id: creation time, a slug of ``name`` and four random hex digits."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].strip("-") or "run"
    return f"{created:%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(2)}"


def save_run(frame: pd.DataFrame, *, source: str, engine: str, name: str | None = None, card: HeadCard | Mapping | None = None,
             image_paths: Sequence | None = None, copy_images: bool = False, label_column: str | None = "label",
             job: str | None = None) -> Run:
    """Save scored rows as a new run and return it.

    ``frame``: the scored columns (``core.scoring.batch``) followed by the input table's other columns
    (``core.scoring.output.with_input_columns``), one row per input row. ``source``: the input's file
    or folder name; ``engine``: page, cli or ray; ``card``: the head card that scored them (version,
    weights hash, encoders). ``image_paths``: each row's picture file (None where it has none), kept so
    the gallery can show it; with ``copy_images`` the pictures are copied into the run (for uploads
    that live in a temporary folder). ``job`` names the scoring job (``find_job``). Raises RunError for
    rows that are not a scored table.
    """
    missing = [c for c in ("row", "prediction", "status") if c not in frame.columns]
    if missing:
        raise RunError(f"not a scored table: no {', '.join(missing)} column")
    if engine not in ENGINES:
        raise RunError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    if image_paths is not None and len(image_paths) != len(frame):
        raise RunError(f"{len(image_paths)} picture paths for {len(frame)} rows")
    created = datetime.now(timezone.utc)
    name = clean_name(name, fallback=clean_name(Path(source).stem, "run"))
    run_id = new_run_id(name, created)
    root = runs_root()
    temporary = root / f".tmp-{run_id}"
    temporary.mkdir()
    try:
        columns = [str(c) for c in frame.columns]
        image_path_column = None
        if image_paths is not None:
            image_path_column = _unused_name("image_path", columns)
            stored = _copy_pictures(image_paths, temporary / IMAGES_FOLDER) if copy_images else \
                [None if p is None or (not isinstance(p, (str, Path)) and pd.isna(p)) else str(p) for p in image_paths]
            frame = frame.assign(**{image_path_column: stored})
        _write_rows(frame, temporary / ROWS_FILE)
        record = _record(run_id, name, created, source, engine, frame, card, columns, image_path_column,
                         label_column if label_column in columns else None, temporary / ROWS_FILE)
        record.job = job
        _write_record(temporary, record)
        os.replace(temporary, root / run_id)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return Run(record, root / run_id)


def _unused_name(base: str, taken: list[str]) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _copy_pictures(paths: Sequence, target: Path) -> list[str | None]:
    """Each existing picture copied once into ``target`` (a hard link where the filesystem allows);
    the stored paths are relative to the run's folder."""
    target.mkdir(parents=True, exist_ok=True)
    copied: dict[str, str] = {}
    stored = []
    for path in paths:
        if path is None or (not isinstance(path, (str, Path)) and pd.isna(path)) or not Path(path).is_file():
            stored.append(None)
            continue
        key = str(path)
        if key not in copied:
            destination = target / f"{len(copied):06d}-{Path(path).name}"
            try:
                os.link(path, destination)
            except OSError:
                shutil.copyfile(path, destination)
            copied[key] = f"{IMAGES_FOLDER}/{destination.name}"
        stored.append(copied[key])
    return stored


def _write_rows(frame: pd.DataFrame, path: Path) -> None:
    """The rows as Parquet with stable types: probabilities and confidence as floats, ``row`` as an
    integer, ``conflict`` as a boolean, every other column as text (None where empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.scoring.batch import FLOAT_COLUMNS

    arrays, names = [], []
    for column in frame.columns:
        values = frame[column]
        if column in FLOAT_COLUMNS:
            array = pa.array(pd.to_numeric(values, errors="coerce").astype("float64"), from_pandas=True)
        elif column == "row":
            array = pa.array(pd.to_numeric(values).astype("int64"))
        elif column == "conflict":
            array = pa.array([_as_bool(v) for v in values], type=pa.bool_())
        else:
            try:  # the common case, text and None: converted in C
                array = pa.array(values, type=pa.string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # other objects: their text
                array = pa.array([None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
                                  for v in values], type=pa.string())
        arrays.append(array)
        names.append(str(column))
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path, row_group_size=ROW_GROUP_ROWS)


def _as_bool(value) -> bool:
    """A conflict flag from a frame (bool) or a CSV read back ("True" / "False")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return False if value is None or pd.isna(value) else bool(value)


def _record(run_id, name, created, source, engine, frame, card, columns, image_path_column, label_column,
            rows_path) -> RunRecord:
    from core.runs.roles import guess_roles
    from core.scoring.batch import result_columns

    card = card.to_dict() if isinstance(card, HeadCard) else dict(card or {})
    scored_columns = set(result_columns())
    inputs = [c for c in columns if c not in scored_columns]
    dates, groups = guess_roles(str(rows_path), inputs)
    has_label = label_column is not None and frame[label_column].notna().any() and \
        (frame[label_column].astype(str).str.strip() != "").any()
    roles = ColumnRoles(text="text" if "text" in columns else None, image="image" if "image" in columns else None,
                        image_path=image_path_column, label=label_column if has_label else None,
                        id="id" if "id" in columns else None, dates=dates, groups=groups)
    encoders = {kind: {"spec": (card.get(f"{kind}_encoder") or {}).get("spec"),
                       "id": (card.get(f"{kind}_encoder") or {}).get("id")} for kind in ("text", "image")}
    return RunRecord(
        id=run_id, name=name, created=created.isoformat(timespec="seconds"), source=str(source), engine=engine,
        rows=len(frame), scored=int(frame["prediction"].notna().sum()), errors=int((frame["status"] == "error").sum()),
        head={"version": card.get("version"), "weights_sha256": card.get("weights_sha256")}, encoders=encoders,
        columns=columns, roles=roles)


def _write_record(folder: Path, record: RunRecord) -> None:
    temporary = folder / f".{RECORD_FILE}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    temporary.write_text(json.dumps(record.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, folder / RECORD_FILE)


def _read_record(folder: Path) -> RunRecord:
    data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    record = RunRecord.from_dict(data)
    if record.id != folder.name:
        raise ValueError(f"its record names another run ({record.id})")
    if not (folder / ROWS_FILE).is_file():
        raise ValueError(f"{ROWS_FILE} is missing")
    return record


def list_runs() -> list[RunRecord]:
    """Every saved run's record, newest first. A damaged run folder is left out with a warning in the
    log (it never hides the others)."""
    records = []
    for folder in runs_root().iterdir():
        if not folder.is_dir() or not _ID.fullmatch(folder.name):
            continue
        try:
            records.append(_read_record(folder))
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("run folder %s cannot be read and is left out: %s", folder, error)
    return sorted(records, key=lambda r: (r.created, r.id), reverse=True)


def find_job(job: str) -> RunRecord | None:
    """The newest saved run of the scoring job ``job`` (see ``save_run``), or None."""
    return next((r for r in list_runs() if r.job == job), None)


def open_run(run_id: str) -> Run:
    """The saved run ``run_id`` (only its record is read; the rows stay on disk), or RunNotFound."""
    folder = runs_root() / check_run_id(run_id)
    if not folder.is_dir():
        raise RunNotFound(f"no run {run_id!r} (`python -m core.cli runs list` shows the saved runs)")
    try:
        return Run(_read_record(folder), folder)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise RunError(f"run {run_id} cannot be read: {error}") from None


def rename_run(run_id: str, name: str) -> RunRecord:
    """Give a run a new name (its id and rows stay); returns the updated record."""
    if not str(name or "").strip():
        raise RunError("a run's name cannot be empty")
    run = open_run(run_id)
    run.record.name = clean_name(name)
    _write_record(run.folder, run.record)
    return run.record


def delete_run(run_id: str, actor=None) -> None:
    """Remove a run and its rows for good. Only an operator may (``actor``: a ``core.access.Actor``;
    None is the machine's user, as on the command line); a viewer gets AccessDenied."""
    from core.access import DELETE_RUN, local_operator, require

    require(actor or local_operator(), DELETE_RUN)
    run = open_run(run_id)
    trash = run.folder.with_name(f".deleted-{run.id}-{secrets.token_hex(2)}")
    os.replace(run.folder, trash)  # gone from the list at once, even if removing the files takes a while
    shutil.rmtree(trash, ignore_errors=True)


EXPORT_FORMATS = ("csv", "parquet")


def export_run(run_id: str, out: str | Path, fmt: str | None = None) -> Path:
    """Write a run's rows to ``out`` as CSV (formula-safe, UTF-8 with a BOM, like every download) or
    Parquet; ``fmt`` defaults to the file's extension. The stored picture paths are left out. Returns
    ``out``. Big runs are written in pieces, never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.scoring.stream import chunk_csv_text

    run = open_run(run_id)
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".") or "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise RunError(f"export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
    columns = list(run.record.columns)
    parquet = pq.ParquetFile(run.rows_path)
    temporary = out.with_name(f".{out.name}.tmp-{secrets.token_hex(3)}")
    try:
        batches = parquet.iter_batches(columns=columns, batch_size=ROW_GROUP_ROWS)
        if fmt == "parquet":
            schema = pa.schema([parquet.schema_arrow.field(c) for c in columns])
            with pq.ParquetWriter(temporary, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
        else:
            with open(temporary, "wb") as handle:
                header = True
                for batch in batches:
                    handle.write(chunk_csv_text(batch.to_pandas(), header=header).encode("utf-8"))
                    header = False
                if header:  # no rows: still a CSV with its header
                    handle.write(chunk_csv_text(pd.DataFrame(columns=columns), header=True).encode("utf-8"))
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out
