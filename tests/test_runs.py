"""Saved runs: a scoring kept in MMSA_HOME comes back whole (every input column, its record), is listed
newest first, renamed, exported formula-safe, and deleted only by an operator; a damaged or foreign
folder never breaks the list, and a run id is never a path."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from core.access import AccessDenied, Actor, Role
from core.runs import (
    RunError,
    RunNotFound,
    delete_run,
    export_run,
    list_runs,
    open_run,
    read_scored_csv,
    rename_run,
    runs_root,
    save_run,
)
from tests.planted import planted_frame


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_run_comes_back_with_every_column_and_a_record_of_what_scored_it(home):
    frame = planted_frame(200)
    frame.loc[1, "text"] = "@brand =HYPERLINK(\"x\") is great"
    card = {"version": "v7", "weights_sha256": "abc", "text_encoder": {"spec": "bundled:minilm", "id": "text:1"},
            "image_encoder": {"spec": "bundled:int8", "id": "image:1"}}
    run = save_run(frame, source="brand posts.csv", engine="page", card=card,
                   image_paths=[None] + [f"/pics/{i}.jpg" for i in range(1, len(frame))])
    again = open_run(run.id)
    record = again.record
    assert record.name == "brand posts" and record.source == "brand posts.csv" and record.engine == "page"
    assert record.rows == len(frame) and record.errors == 3 and record.scored == len(frame) - 3
    assert record.head == {"version": "v7", "weights_sha256": "abc"}
    assert record.encoders["text"] == {"spec": "bundled:minilm", "id": "text:1"}
    assert record.columns == list(frame.columns)
    assert record.roles.dates == ["date"] and set(record.roles.groups) == {"brand", "campaign"}
    assert record.roles.label == "label" and record.roles.image_path == "image_path"
    rows = pd.read_parquet(again.rows_path)
    assert list(rows.columns) == [*frame.columns, "image_path"]
    assert rows.loc[1, "text"] == frame.loc[1, "text"] and pd.isna(rows["image_path"].iloc[0])
    assert rows["p_fused_positive"].dtype == "float64" and rows["conflict"].dtype == bool
    assert (rows["brand"] == frame["brand"]).all() and (rows["date"] == frame["date"]).all()
    assert json.loads((again.folder / "run.json").read_text())["id"] == run.id


def test_runs_are_listed_newest_first_and_renamed_without_touching_the_rows(home):
    first = save_run(planted_frame(20), source="a.csv", engine="cli", name="first")
    time.sleep(1.1)  # creation times are kept to the second
    second = save_run(planted_frame(20), source="b.csv", engine="cli")
    assert [r.id for r in list_runs()] == [second.id, first.id]
    before = first.rows_path.read_bytes()
    renamed = rename_run(first.id, "  Spring   campaign\n review ")
    assert renamed.name == "Spring campaign review" and open_run(first.id).name == "Spring campaign review"
    assert open_run(first.id).rows_path.read_bytes() == before and renamed.id == first.id
    with pytest.raises(RunError, match="empty"):
        rename_run(first.id, "   ")


def test_a_run_id_is_a_folder_name_never_a_path_and_damaged_runs_are_left_out(home):
    save_run(planted_frame(20), source="a.csv", engine="cli")
    for bad in ("../heads", "/etc", "..", "Run With Spaces", ""):
        with pytest.raises(RunNotFound):
            open_run(bad)
    with pytest.raises(RunNotFound):
        open_run("20240101-000000-nothing-0000")
    broken = runs_root() / "20240101-000000-broken-0000"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (runs_root() / ".tmp-20240101-000000-half-0000").mkdir()   # a save that crashed half way
    assert len(list_runs()) == 1
    with pytest.raises(RunError, match="cannot be read"):
        open_run(broken.name)


def test_export_keeps_every_row_and_column_and_neutralises_formulas(home, tmp_path):
    frame = planted_frame(250)
    frame.loc[0, "text"] = "=HYPERLINK(\"http://x\")"
    run = save_run(frame, source="a.csv", engine="cli", image_paths=[f"/p/{i}.jpg" for i in range(len(frame))])
    csv = export_run(run.id, tmp_path / "out.csv")
    raw = csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    back = pd.read_csv(csv, encoding="utf-8-sig", keep_default_na=False)
    assert list(back.columns) == list(frame.columns)            # the stored picture path stays private
    assert len(back) == len(frame) and back.loc[0, "text"].startswith("'=")
    assert read_scored_csv(csv).loc[0, "text"] == frame.loc[0, "text"]   # and reads back as written
    parquet = pd.read_parquet(export_run(run.id, tmp_path / "out.parquet"))
    assert list(parquet.columns) == list(frame.columns) and len(parquet) == len(frame)
    with pytest.raises(RunError, match="format"):
        export_run(run.id, tmp_path / "out.xlsx")


def test_only_an_operator_deletes_a_run(home):
    run = save_run(planted_frame(20), source="a.csv", engine="cli")
    with pytest.raises(AccessDenied, match="only an operator may delete a saved run"):
        delete_run(run.id, Actor("visitor", Role.VIEWER, "no password"))
    assert open_run(run.id)
    delete_run(run.id, Actor("ops", Role.OPERATOR))
    assert list_runs() == [] and not run.folder.exists()
    with pytest.raises(RunNotFound):
        open_run(run.id)


def test_uploaded_pictures_are_copied_into_the_run_so_it_outlives_the_upload(home, tmp_path):
    from tests.conftest import draw_image

    pictures = [draw_image(tmp_path / f"{k}.png", "positive", seed=k) for k in range(3)]
    frame = planted_frame(4).head(4)
    run = save_run(frame, source="a.csv", engine="page", copy_images=True,
                   image_paths=[pictures[0], pictures[1], pictures[0], tmp_path / "gone.png"])
    for picture in pictures:
        picture.unlink()
    stored = pd.read_parquet(run.rows_path)["image_path"].tolist()
    assert stored[0] == stored[2] and pd.isna(stored[3])
    assert all((run.folder / p).is_file() for p in stored[:3])


def test_a_table_that_is_not_scored_is_refused(home):
    with pytest.raises(RunError, match="not a scored table"):
        save_run(pd.DataFrame({"text": ["a"]}), source="a.csv", engine="cli")
    assert list_runs() == []
