"""The files of a distributed run: the pairs table it reads, and the output folder it fills.

The output folder holds a manifest (``_manifest.json``: the input's name, sha256 and rows, the column
choice, the head, the partition size and format) and one file per finished partition
(``part-00007.parquet``), each written whole under a temporary name and then renamed, so a partition
file that exists is finished. A rerun refuses a folder whose manifest describes another run
(``OutputMismatch``) and skips the partitions already there. ``read_scored`` puts the finished
partitions back together in input order. The Ray stages are in ``core.scoring.distributed_stages``,
the run itself in ``core.scoring.distributed``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from core.errors import InputError
from core.scoring.batch import empty_result

MANIFEST = "_manifest.json"
FORMATS = ("parquet", "csv")


class OutputMismatch(InputError):
    """The output folder holds a run of another table, head or partition size."""


# ----- the table and the output folder -------------------------------------------------------------

def read_pairs_table(path: str | Path) -> pd.DataFrame:
    """A CSV with the local reader (``read_table``: encodings, every cell a str, blanks ""), or a Parquet file
    with every cell turned into the same kind of str."""
    from core.io.tables import TableError, read_table

    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return read_table(path)
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise TableError(f"cannot read {path.name} as Parquet: {error}") from None
    return frame.astype(object).apply(lambda column: column.map(_cell_text))


def _cell_text(value) -> str:
    """A Parquet cell as ``read_table`` gives a CSV cell: text, "" where blank."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return str(value)


def partition_name(k: int, fmt: str) -> str:
    """File name of partition ``k``."""
    return f"part-{k:05d}.{fmt}"


def finished_partitions(out_dir: Path, n_partitions: int, fmt: str) -> list[int]:
    """Partitions whose file is in ``out_dir`` (written whole: temporary name, then a rename)."""
    return [k for k in range(n_partitions) if (out_dir / partition_name(k, fmt)).is_file()]


def open_output(out_dir: Path, manifest: dict) -> None:
    """Create ``out_dir`` with ``manifest``, or check that the one there describes the same run (else
    OutputMismatch); leftovers of interrupted writes are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST
    if path.exists():
        found = json.loads(path.read_text())
        for key, what in (("input", "table"), ("columns", "column choice"), ("head", "head version"),
                          ("partition_rows", "partition size"), ("format", "output format")):
            if found.get(key) != manifest[key]:
                raise OutputMismatch(
                    f"{out_dir} holds a run of another {what} ({found.get(key)} there, {manifest[key]} now); "
                    f"give another output folder, or delete this one to start again")
    else:
        write_atomically(path, json.dumps(manifest, indent=2).encode())
    for leftover in out_dir.glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary name in the same folder, then a rename."""
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    temporary.write_bytes(data)
    os.replace(temporary, path)


def read_scored(out_dir: str | Path) -> pd.DataFrame:
    """Every finished partition of ``out_dir`` as one scored table in input order (the local engine's
    columns: scored columns, then every input column)."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text())
    fmt = manifest["format"]
    parts = [out_dir / partition_name(k, fmt) for k in finished_partitions(out_dir, manifest["partitions"], fmt)]
    if not parts:
        return empty_result()
    if fmt == "parquet":
        frames = [pd.read_parquet(p) for p in parts]
    else:
        from core.io.tables import read_table

        frames = [read_table(p) for p in parts]
    frame = pd.concat(frames, ignore_index=True)
    # By number: a CSV partition reads back as text, where "10" sorts before "2".
    return frame.sort_values("row", kind="stable", key=lambda rows: rows.astype(int)).reset_index(drop=True)
