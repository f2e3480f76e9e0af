"""Read a user's CSV and turn its rows into checked text/image pairs; write CSVs that are safe to open.

Whole-file problems (empty file, missing columns, unreadable bytes) raise TableError. Problems
in one row never raise: they become that row's `error`, so one bad cell never loses the rest
of the upload. Images are only checked for existence here; decoding happens during batch
scoring with core.io.images, so a slow or broken image never blocks reading the table.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import charset_normalizer
import pandas as pd

from core.errors import InputError
from core.io.labels import LabelError, normalise_label
from core.io.paths import UnsafePathError, resolve_inside

MAX_TEXT_CHARS = 2000
MAX_CSV_BYTES = 200 * 2**20

# Legacy encodings tried after UTF-8, chosen between by charset_normalizer. cp1252 rather
# than latin-1: it is what Excel on Western Windows writes, and it agrees with latin-1 on
# every printable character except that it has €, “smart quotes” and dashes where latin-1
# has invisible control codes. GB18030 covers GBK/GB2312 exports from Chinese Excel/WPS.
_LEGACY_ENCODINGS = ["gb18030", "cp1252"]
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16",
                   "gb18030": "GB18030", "cp1252": "Windows-1252"}
# Spreadsheet apps run a cell starting with these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class TableError(InputError):
    """A CSV that cannot be used as a whole; the message says what to fix."""


@dataclass
class PairRow:
    """One row of the user's table, checked. `error` set means it cannot be scored; `warnings` are notes.

    `text` is what the model reads (the cell stripped, at most MAX_TEXT_CHARS characters); `text_cell` and
    `image_cell` are the text and image cells exactly as the table held them, which is what a scored table
    gives back (None when the column is not used, or for a row built in code: then `text` / the image's
    file name stand in)."""

    row: int  # 0-based position in the table (the spreadsheet line is row + 2, after the header)
    id: str
    text: str | None
    image_path: Path | None
    label: str | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    text_cell: str | None = None
    image_cell: str | None = None

    @property
    def ok(self) -> bool:
        """True when the row can be scored (no error)."""
        return self.error is None


# --- reading a table -------------------------------------------------------------------------

def read_table(source: str | Path | bytes | BinaryIO) -> pd.DataFrame:
    """Read a CSV (a file path, its bytes, or an open binary file) into a DataFrame of strings.

    Every cell is a str; blank cells are "" (never NaN), so words such as "NA" or "none"
    (a valid neutral label) stay text. Header names are stripped of whitespace. The detected
    encoding is recorded in `frame.attrs["encoding"]`. Raises TableError for whole-file problems.
    """
    raw = _read_bytes(source)
    if not raw.strip():
        raise TableError("the file is empty")
    text, encoding = _decode(raw)
    # From the header as written: pandas renames a repeated name ("a", "a.1") before anyone could see it.
    header = _header_names(text)
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise TableError(f"column names appear more than once: {_quoted(duplicated)}")
    frame = _parse_csv(text)
    frame.columns = [str(name).strip() for name in frame.columns]
    frame.attrs["encoding"] = _ENCODING_NAMES.get(encoding, encoding)
    return frame


def _read_bytes(source: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if path.stat().st_size > MAX_CSV_BYTES:
                raise TableError(f"{path.name} is over the {MAX_CSV_BYTES // 2**20} MB limit for a table")
            raw = path.read_bytes()
        except FileNotFoundError:
            raise TableError(f"file not found: {path.name}") from None
        except IsADirectoryError:
            raise TableError(f"{path.name} is a folder, not a CSV file") from None
        except OSError as error:
            raise TableError(f"cannot read {path.name}: {error.strerror or error}") from None
    else:
        raw = source.read(MAX_CSV_BYTES + 1)  # one byte past the cap tells us it is too big
    if len(raw) > MAX_CSV_BYTES:
        raise TableError(f"the file is over the {MAX_CSV_BYTES // 2**20} MB limit for a table")
    return raw


def _decode(raw: bytes) -> tuple[str, str]:
    """Bytes to text, returning the codec used.

    Order: a BOM is unambiguous, so it wins; then strict UTF-8, because non-ASCII text in
    any other encoding almost never happens to be valid UTF-8; then charset_normalizer picks
    between the legacy encodings (neither a fixed order works: cp1252 decodes Chinese text
    into mojibake without complaint, and GB18030 decodes many accented Latin words).
    """
    for bom, codec in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(codec), codec
            except UnicodeDecodeError as error:
                raise TableError(f"the file starts with a {_ENCODING_NAMES[codec]} marker but is not valid "
                                 f"{_ENCODING_NAMES[codec]} (byte {error.start})") from None
    if b"\0" in raw:
        raise TableError(_binary_file_message(raw))
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(raw, cp_isolation=_LEGACY_ENCODINGS).best()
    if best is None:
        raise TableError("could not work out the text encoding (tried UTF-8, GB18030 and Windows-1252); "
                         "save the file as 'CSV UTF-8'")
    return str(best), best.encoding


def _binary_file_message(raw: bytes) -> str:
    if raw.startswith(b"PK\x03\x04"):
        return "this is an Excel workbook or a zip file, not a CSV; save it as 'CSV UTF-8' first"
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        return "this is an old Excel (.xls) workbook, not a CSV; save it as 'CSV UTF-8' first"
    return "this looks like a binary file, not a CSV text file"


def _header_names(text: str) -> list[str]:
    """The first non-blank row's cells, stripped, as the CSV module reads them (quotes undone)."""
    try:
        for cells in csv.reader(io.StringIO(text)):
            if any(cell.strip() for cell in cells):
                return [cell.strip() for cell in cells]
    except csv.Error:
        pass  # pandas reports what is wrong with the file
    return []


def _parse_csv(text: str) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # A first data row longer than the header is only a ParserWarning in pandas; it
            # silently drops cells, so we treat it as the error it is.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise TableError("the file has no header row (it is empty or only blank lines)") from None
    except pd.errors.ParserWarning:
        raise TableError("the first row has more cells than the header; text containing commas "
                         "must be inside double quotes") from None
    except pd.errors.ParserError as error:
        raise TableError(_parser_error_message(str(error))) from None


def _parser_error_message(detail: str) -> str:
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    if fields:
        expected, line, saw = fields.groups()
        return (f"line {line} has {saw} cells but the header has {expected}; text containing commas "
                f"must be inside double quotes")
    if "EOF inside string" in detail:
        return "a quoted cell is never closed (a \" without its partner); check the quotes in the file"
    return f"could not read the CSV: {detail}"


# --- checking rows ---------------------------------------------------------------------------

def prepare_pairs(
    frame: pd.DataFrame,
    *,
    text_column: str | None = "text",
    image_column: str | None = "image",
    label_column: str | None = None,
    id_column: str | None = None,
    images_root: Path | None = None,
    require_label: bool = False,
    first_row: int = 0,
    id_counts: Counter | None = None,
) -> list[PairRow]:
    """Check every row and return one PairRow per row, in table order.

    Column names match case-insensitively when there is no exact match. Pass None for
    `text_column` or `image_column` to score one modality only. `require_label=True` without
    a `label_column` uses "label". Image paths resolve under `images_root` (a row naming an
    image without an `images_root` is an error) and are only checked to exist.

    A slice of a bigger table (a partition scored on a cluster) passes `first_row`, its first row's
    position in the whole table, and `id_counts` (`row_ids` of the whole table, counted), so its rows
    get the same numbers, ids and duplicate-id notes as the whole table would.
    """
    if require_label and label_column is None:
        label_column = "label"
    wanted = {"text": text_column, "image": image_column, "label": label_column, "id": id_column}
    columns = _match_columns(frame, {role: name for role, name in wanted.items() if name is not None})

    rows = [_check_row(position, record, columns, images_root, require_label)
            for position, record in enumerate(frame.to_dict("records"), start=first_row)]
    _flag_duplicate_ids(rows, id_counts)
    return rows


def row_ids(frame: pd.DataFrame, id_column: str | None) -> list[str]:
    """The id ``prepare_pairs`` gives each row of ``frame``: the id cell, else the row's position."""
    if id_column is None:
        return [str(position) for position in range(len(frame))]
    column = _match_columns(frame, {"id": id_column})["id"]
    return [_cell({column: value}, column) or str(position) for position, value in enumerate(frame[column])]


def _match_columns(frame: pd.DataFrame, wanted: dict[str, str]) -> dict[str, str]:
    """role -> actual column name; raises TableError naming every missing column and those found."""
    found = [str(name) for name in frame.columns]
    by_lower: dict[str, list[str]] = {}
    for name in found:
        by_lower.setdefault(name.strip().lower(), []).append(name)
    matched, missing = {}, []
    for role, name in wanted.items():
        if name in found:
            matched[role] = name
        elif len(by_lower.get(name.strip().lower(), [])) == 1:
            matched[role] = by_lower[name.strip().lower()][0]
        else:
            missing.append(name)
    if missing:
        raise TableError(f"missing column{'s' if len(missing) > 1 else ''} {_quoted(missing)}; "
                         f"columns found: {_quoted(found) if found else 'none'}")
    return matched


def _check_row(position: int, record: dict, columns: dict[str, str],
               images_root: Path | None, require_label: bool) -> PairRow:
    errors: list[str] = []
    notes: list[str] = []

    row_id = _cell(record, columns.get("id"))
    if row_id is None:
        if "id" in columns:
            notes.append("blank id; using the row number")
        row_id = str(position)

    text = _cell(record, columns.get("text"))
    if text is not None and len(text) > MAX_TEXT_CHARS:
        # The model reads the start; the row keeps the whole cell (text_cell) for the scored table.
        notes.append(f"text is {len(text):,} characters; the model read the first {MAX_TEXT_CHARS:,}")
        text = text[:MAX_TEXT_CHARS]

    image_path = None
    image_name = _cell(record, columns.get("image"))
    if image_name is not None:
        image_path, image_error = _checked_image_path(image_name, images_root)
        if image_error:
            errors.append(image_error)

    label = None
    if "label" in columns:
        raw_label = _cell(record, columns["label"])
        if raw_label is not None or require_label:
            try:
                label = normalise_label(raw_label)
            except LabelError as error:
                errors.append(str(error))

    if text is None and image_name is None:
        errors.append("row has neither text nor an image")
    return PairRow(row=position, id=row_id, text=text, image_path=image_path, label=label,
                   error="; ".join(errors) or None, warnings=notes,
                   text_cell=_raw_cell(record, columns.get("text")),
                   image_cell=_raw_cell(record, columns.get("image")))


def _cell(record: dict, column: str | None) -> str | None:
    """The cell as stripped text, or None when the column is unused or the cell is blank/NaN."""
    if column is None:
        return None
    value = record.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def _raw_cell(record: dict, column: str | None) -> str | None:
    """The cell exactly as the table holds it (spaces and all), or None when the column is unused or the
    cell is missing (NaN in a frame built in code)."""
    if column is None:
        return None
    value = record.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _checked_image_path(name: str, images_root: Path | None) -> tuple[Path | None, str | None]:
    if images_root is None:
        return None, f"image {name!r} given but no image folder was chosen"
    try:
        path = resolve_inside(images_root, name)
    except UnsafePathError as error:
        return None, f"unsafe image path: {error}"
    if path.is_dir():
        return path, f"image {name!r} is a folder, not a file"
    if not path.is_file():
        return path, f"image file not found: {name!r}"
    return path, None


def _flag_duplicate_ids(rows: list[PairRow], counts: Counter | None = None) -> None:
    counts = counts if counts is not None else Counter(row.id for row in rows)
    for row in rows:
        if counts[row.id] > 1:
            row.warnings.append(f"duplicate id {row.id!r} (appears {counts[row.id]} times)")


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


# --- writing downloads -----------------------------------------------------------------------

def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where text cells (and headers) that a spreadsheet would run as a formula start with '.

    Only text is touched: numeric columns such as probabilities stay numbers, so -0.5 in a
    float column is left alone while the text "-0.5" or "=HYPERLINK(...)" gets the quote.
    """
    safe = frame.copy()
    safe.columns = [_neutralise_cell(name) for name in safe.columns]
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]) and not pd.api.types.is_bool_dtype(safe[column]):
            safe[column] = safe[column].map(_neutralise_cell)
    return safe


def _neutralise_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_safe_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV bytes for a download: formulas neutralised, UTF-8 with a BOM.

    The BOM is what makes Excel on Windows open the file as UTF-8 instead of cp1252 (which
    would garble emoji, accents and Chinese); read_table strips it again. Every text cell is
    quoted: pandas leaves a cell holding a bare carriage return unquoted otherwise, which
    splits the row in two when read back.
    """
    text = neutralise_formulas(frame).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)
    return text.encode("utf-8-sig")
