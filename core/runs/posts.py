"""One post of a saved run, read back by its row number (the gallery's "open in Explore")."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.runs.store import RunError, open_run


@dataclass
class Post:
    """A run's post: its text, its picture's file name and path (None without one, or when the file is
    gone), its id and row number, and the run it comes from."""
    run_id: str
    run_name: str
    row: int
    id: str | None
    text: str | None
    image_name: str | None
    image_path: Path | None


def read_post(run_id: str, row: int | str) -> Post:
    """Post ``row`` (the 0-based input row) of run ``run_id``; RunError when there is no such post."""
    from core.analysis.sql import connect, quote_identifier

    try:
        row = int(row)
    except (TypeError, ValueError):
        raise RunError(f"row {str(row)[:20]!r} is not a row number") from None
    run = open_run(run_id)
    roles = run.record.roles
    wanted = {"id": roles.id, "text": roles.text, "image": roles.image, "image_path": roles.image_path}
    select = ", ".join(f"{quote_identifier(c)} AS {k}" if c else f"NULL AS {k}" for k, c in wanted.items())
    con = connect(str(run.rows_path))
    try:
        found = con.execute(f"SELECT {select} FROM rows WHERE row = ? LIMIT 1", [row]).fetchone()
    finally:
        con.close()
    if found is None:
        raise RunError(f"run {run.id} has no row {row}")
    post_id, text, image, stored = found
    path = None
    if stored:
        path = Path(stored) if Path(stored).is_absolute() else run.folder / stored
        path = path if path.is_file() else None
    return Post(run.id, run.name, row, post_id, text, image, path)
