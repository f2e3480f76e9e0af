"""Saved runs: every finished scoring, newest first; open one in the analysis page, rename, download or
delete it (deleting is for operators)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.analysis_views import file_stem
from app_pages.common import current_actor, viewer_reason
from core.access import AccessDenied
from core.runs import RunError, delete_run, export_run, list_runs, rename_run

state = st.session_state

st.title("Saved runs")
st.caption("Every finished scoring (Batch scoring, `python -m core.cli score`, a Ray output folder saved with "
           "`runs add`) is kept as a run: its scored rows with every column of the table, and what scored them.")

if state.get("runs_deleted"):
    st.success("Deleted the run:")
    st.text(state.pop("runs_deleted"))
records = list_runs()
if not records:
    st.info("No saved runs yet: score a table on *Batch scoring* and it appears here.")
    st.page_link("app_pages/batch.py", label="Batch scoring", icon=":material/table:")
    st.stop()

listing = pd.DataFrame([{"name": r.name, "created (UTC)": r.created[:19].replace("T", " "), "rows": r.rows,
                         "scored": r.scored, "bad rows": r.errors, "source": r.source, "scored on": r.engine,
                         "head version": r.head_version, "id": r.id} for r in records])
st.dataframe(listing, hide_index=True)

by_id = {r.id: r for r in records}
if state.get("runs_choice") not in by_id:
    state["runs_choice"] = records[0].id
run_id = st.selectbox("Run", list(by_id), key="runs_choice",
                      format_func=lambda i: f"{by_id[i].name} — {by_id[i].created[:16].replace('T', ' ')} UTC")
record = by_id[run_id]
st.page_link("app_pages/analyse.py", label="Analyse this run", icon=":material/insights:", query_params={"run": run_id})

c1, c2 = st.columns(2)
with c1:
    new_name = st.text_input("Name", value=record.name, key=f"runs_name_{run_id}", max_chars=120)
    if st.button("Rename", key="runs_rename", disabled=new_name.strip() == record.name):
        try:
            rename_run(run_id, new_name)
        except RunError as error:
            st.error("Not renamed:")
            st.text(str(error))
        else:
            st.rerun()
with c2:
    stem = file_stem(record.name)

    def _export(fmt: str):
        def make() -> bytes:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory(prefix="mmsa-export-") as folder:
                return export_run(run_id, Path(folder) / f"rows.{fmt}", fmt).read_bytes()
        return make

    st.download_button("Download the rows (CSV)", _export("csv"), file_name=f"{stem}.csv", mime="text/csv",
                       key="runs_download_csv", on_click="ignore",
                       help="Every row and column. Cells a spreadsheet would run as a formula get a leading quote.")
    st.download_button("Download the rows (Parquet)", _export("parquet"), file_name=f"{stem}.parquet",
                       mime="application/vnd.apache.parquet", key="runs_download_parquet", on_click="ignore")

st.divider()
actor = current_actor()
with st.expander("Delete this run"):
    sure = st.checkbox("Delete the run and its rows for good", key="runs_delete_sure", disabled=not actor.is_operator,
                       help=None if actor.is_operator else viewer_reason(actor))
    if st.button("Delete", key="runs_delete", disabled=not (actor.is_operator and sure),
                 help=None if actor.is_operator else viewer_reason(actor)):
        try:
            delete_run(run_id, actor)
        except (AccessDenied, RunError) as error:
            st.error("Not deleted:")
            st.text(str(error))
        else:
            state.pop("runs_choice", None)
            state["runs_deleted"] = record.name
            st.rerun()
