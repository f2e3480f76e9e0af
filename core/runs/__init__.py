"""Saved runs: scored rows kept in ``$MMSA_HOME/runs/<id>/`` (Parquet + a JSON record) to analyse later.

    from core.runs import save_run, list_runs, open_run, rename_run, delete_run, export_run
"""
from core.runs.posts import Post, read_post
from core.runs.record import ColumnRoles, RunRecord
from core.runs.sources import read_scored_csv, save_ray_output, save_scored_csv
from core.runs.store import (
    EXPORT_FORMATS,
    Run,
    RunError,
    RunNotFound,
    check_run_id,
    delete_run,
    export_run,
    find_job,
    list_runs,
    open_run,
    rename_run,
    runs_root,
    save_run,
)

__all__ = ["EXPORT_FORMATS", "ColumnRoles", "Post", "Run", "RunError", "RunNotFound", "RunRecord", "check_run_id",
           "delete_run", "export_run", "find_job", "list_runs", "open_run", "read_post", "read_scored_csv", "rename_run", "runs_root",
           "save_ray_output", "save_run", "save_scored_csv"]
