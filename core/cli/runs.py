"""``runs list | show | rename | delete | export | add``: the saved runs of this MMSA_HOME (core/runs), and
the run that ``score`` saves when it finishes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.errors import InputError


def find_run(name_or_id: str):
    """The run with this id, or the one run with exactly this name; InputError otherwise."""
    from core.runs import RunNotFound, list_runs, open_run

    try:
        return open_run(name_or_id)
    except RunNotFound:
        named = [r for r in list_runs() if r.name == name_or_id]
        if len(named) == 1:
            return open_run(named[0].id)
        if len(named) > 1:
            raise InputError(f"{len(named)} runs are named {name_or_id!r}: give the id "
                             f"({', '.join(r.id for r in named)})") from None
        raise


def save_score_run(out: Path, *, source: str, card: dict, rows) -> None:
    """After ``score``: save the finished output as a run and print ``run: <id>`` (the command's last line)."""
    from core.runs import save_scored_csv

    paths = [None if row.image_path is None else str(row.image_path) for row in rows]
    run = save_scored_csv(out, source=source, card=card, image_paths=paths)
    print(f"saved as run {run.name!r}; analyse it with `python -m core.cli analyse {run.id}` or on the app's "
          "Analyse page", file=sys.stderr)
    print(f"run: {run.id}")


def save_ray_run(out: Path, name: str | None = None) -> None:
    """After ``score --engine ray`` (or ``runs add``): save the output folder as a run, print ``run: <id>``."""
    from core.runs import save_ray_output

    run = save_ray_output(out, name=name)
    print(f"saved as run {run.name!r} ({run.record.rows:,} rows)", file=sys.stderr)
    print(f"run: {run.id}")


def _record_line(r) -> str:
    return (f"{r.id}  {r.created[:19].replace('T', ' ')}  {r.rows:>9,} rows  {r.errors:>6,} bad  "
            f"head {r.head_version or '?':<22} {r.name}")


def cmd_runs_list(args) -> int:
    """``runs list``: every saved run, newest first (``--json FILE``: their records)."""
    from core.runs import list_runs

    records = list_runs()
    for record in records:
        print(_record_line(record))
    if not records:
        print("no saved runs yet: `python -m core.cli score …` saves one", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in records], indent=2, ensure_ascii=False))
    return 0


def cmd_runs_show(args) -> int:
    """``runs show RUN``: a run's record as JSON."""
    print(json.dumps(find_run(args.run_id).record.to_dict(), indent=2, ensure_ascii=False))
    return 0


def cmd_runs_rename(args) -> int:
    from core.runs import rename_run

    record = rename_run(find_run(args.run_id).id, args.name)
    print(f"run {record.id} is now named {record.name!r}")
    return 0


def cmd_runs_delete(args) -> int:
    """``runs delete RUN``: remove a run and its rows (the machine's user is the operator here)."""
    from core.runs import delete_run

    run = find_run(args.run_id)
    delete_run(run.id)
    print(f"run {run.id} ({run.name!r}) deleted")
    return 0


def cmd_runs_export(args) -> int:
    """``runs export RUN --out FILE``: every row and column as CSV (formula-safe) or Parquet."""
    from core.runs import export_run

    run = find_run(args.run_id)
    out = export_run(run.id, args.out, args.format)
    print(f"wrote {run.record.rows:,} rows to {out}")
    return 0


def cmd_runs_add(args) -> int:
    """``runs add PATH``: save a finished ``score`` output (a scored CSV, or a ``--engine ray`` folder) as a run."""
    from core.runs import save_scored_csv

    path = Path(args.path)
    if path.is_dir():
        save_ray_run(path, args.name)
        return 0
    if not path.is_file():
        raise InputError(f"{path}: no such scored file or folder")
    run = save_scored_csv(path, source=path.name, name=args.name)
    print(f"saved as run {run.name!r} ({run.record.rows:,} rows; pictures unknown: the gallery stays empty)",
          file=sys.stderr)
    print(f"run: {run.id}")
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""
    from core.runs import EXPORT_FORMATS

    runs = sub.add_parser("runs", help="saved runs (every finished scoring): list, show, rename, delete, export, add")
    verbs = runs.add_subparsers(dest="runs_command", required=True)
    listing = verbs.add_parser("list", help="every saved run, newest first")
    listing.add_argument("--json", default=None, metavar="FILE", help="also write the runs' records here")
    listing.set_defaults(run=cmd_runs_list)
    show = verbs.add_parser("show", help="a run's record (what scored it, its columns) as JSON")
    show.add_argument("run_id", metavar="RUN", help="run id (or its name when only one run has it)")
    show.set_defaults(run=cmd_runs_show)
    rename = verbs.add_parser("rename", help="give a run another name")
    rename.add_argument("run_id", metavar="RUN")
    rename.add_argument("name")
    rename.set_defaults(run=cmd_runs_rename)
    delete = verbs.add_parser("delete", help="remove a run and its rows")
    delete.add_argument("run_id", metavar="RUN")
    delete.set_defaults(run=cmd_runs_delete)
    export = verbs.add_parser("export", help="write a run's rows as CSV (formula-safe) or Parquet")
    export.add_argument("run_id", metavar="RUN")
    export.add_argument("--out", required=True, help="the file to write (.csv or .parquet)")
    export.add_argument("--format", choices=EXPORT_FORMATS, default=None, help="default: from --out's extension")
    export.set_defaults(run=cmd_runs_export)
    add = verbs.add_parser("add", help="save a finished `score` output as a run: a scored CSV, or an "
                           "`--engine ray` output folder")
    add.add_argument("path")
    add.add_argument("--name", default=None)
    add.set_defaults(run=cmd_runs_add)
