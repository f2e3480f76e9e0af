"""The shell user's story with saved runs: `score` saves a run and says its id last, `analyse` answers
with the page's engine and filters in exactly the documented JSON, `runs` lists, shows, renames,
exports and deletes, and a Ray output folder becomes a run."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from core import cli
from core.runs import list_runs, open_run, save_run
from tests.conftest import make_pair_set
from tests.planted import ALL_NEGATIVE, FLOOD_POSTS, PLANTED_WEEK, planted_frame


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def planted_run(home):
    return save_run(planted_frame(), source="posts.csv", engine="cli")


def test_score_saves_a_run_and_prints_its_id_last(home, tmp_path, trained_head, capsys):
    csv = make_pair_set(tmp_path, n_per_class=2, seed=5)
    table = pd.read_csv(csv)
    table["brand"] = ["Acme", "Bolt"] * 3
    table["date"] = ["2024-03-04", "2024-03-05", "2024-03-12", "05/04/2024", "not yet", ""]
    table.loc[0, "text"] = "@acme =cheap but #great"
    table.to_csv(csv, index=False)
    out = tmp_path / "scored.csv"
    assert cli.main(["score", "--csv", str(csv), "--out", str(out), "--head", str(trained_head),
                     "--images", str(tmp_path / "images")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("run: ")
    run = open_run(last.removeprefix("run: "))
    assert run.record.source == "pairs.csv" and run.record.rows == 6 and run.record.engine == "cli"
    assert run.record.head["weights_sha256"] and run.record.encoders["text"]["id"]
    assert run.record.roles.groups == ["brand"] and run.record.roles.dates == ["date"]
    rows = pd.read_parquet(run.rows_path)
    assert rows.loc[0, "text"] == "@acme =cheap but #great"          # the CSV's formula quote is undone
    assert (pd.read_csv(out)["prediction"].tolist() == rows["prediction"].tolist())
    assert all((tmp_path / "images" / name).samefile(path) for name, path in zip(table["image"], rows["image_path"]))
    # --no-run leaves the runs alone and ends on the summary line.
    assert cli.main(["score", "--csv", str(csv), "--out", str(out), "--head", str(trained_head),
                     "--images", str(tmp_path / "images"), "--no-run"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("scored ")
    assert len(list_runs()) == 1


def test_analyse_writes_exactly_the_documented_json(planted_run, tmp_path):
    out = tmp_path / "analysis.json"
    assert cli.main(["analyse", planted_run.id, "--by", "brand", "--top", "20", "--over", "date", "--freq", "w",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"rows", "by", "over", "drivers", "themes"} and report["rows"] == planted_run.record.scored
    assert set(report["by"]) == {"column", "groups"} and report["by"]["column"] == "brand"
    for group in report["by"]["groups"]:
        assert set(group) == {"value", "n", "share", "net", "net_ci"}
        assert set(group["share"]) == {"negative", "neutral", "positive"} and len(group["net_ci"]) == 2
    assert report["by"]["groups"][-1]["value"] == ALL_NEGATIVE
    assert set(report["over"]) == {"column", "freq", "unparsed", "periods"}
    assert report["over"]["freq"] == "W" and report["over"]["unparsed"] == 7
    for period in report["over"]["periods"]:
        assert set(period) == {"start", "n", "share", "unusual"}
    assert [p["start"] for p in report["over"]["periods"] if p["unusual"]] == [PLANTED_WEEK]


def test_analyse_filters_like_the_page(planted_run, tmp_path, capsys):
    out = tmp_path / "a.json"
    assert cli.main(["analyse", planted_run.id, "--search", "#flood", "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"rows": FLOOD_POSTS, "by": None, "over": None, "drivers": None,
                                             "themes": None}
    assert f"#flood: {FLOOD_POSTS}" in capsys.readouterr().out
    # The page's own query string, with flags on top of it.
    assert cli.main(["analyse", "posts", "--filters", "q=%23flood&class=negative", "--where", "brand=Acme",
                     "--json", str(out)]) == 0
    frame = planted_frame()
    expected = frame[(frame["status"] != "error") & frame["text"].str.contains("#Flood ") &
                     (frame["prediction"] == "negative") & (frame["brand"] == "Acme")]
    assert json.loads(out.read_text())["rows"] == len(expected)


def test_bad_requests_are_one_clear_line(planted_run, capsys):
    assert cli.main(["analyse", planted_run.id, "--by", "colour"]) == 2
    assert "no column 'colour'" in capsys.readouterr().err
    assert cli.main(["analyse", "../../etc"]) == 2
    assert "no run" in capsys.readouterr().err
    assert cli.main(["analyse", planted_run.id, "--where", "brand"]) == 2
    assert "COLUMN=VALUE" in capsys.readouterr().err
    assert cli.main(["analyse", planted_run.id, "--freq", "M"]) == 2


def test_runs_list_show_rename_export_delete(planted_run, tmp_path, capsys):
    listing = tmp_path / "runs.json"
    assert cli.main(["runs", "list", "--json", str(listing)]) == 0
    assert planted_run.id in capsys.readouterr().out
    assert [r["id"] for r in json.loads(listing.read_text())] == [planted_run.id]
    assert cli.main(["runs", "show", planted_run.id]) == 0
    assert json.loads(capsys.readouterr().out)["roles"]["dates"] == ["date"]
    assert cli.main(["runs", "rename", planted_run.id, "Spring review"]) == 0
    assert cli.main(["runs", "export", "Spring review", "--out", str(tmp_path / "rows.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "rows.csv", encoding="utf-8-sig")) == planted_run.record.rows
    assert cli.main(["runs", "delete", planted_run.id]) == 0
    assert list_runs() == []


def test_a_ray_output_folder_becomes_a_run(home, tmp_path, capsys):
    from core.scoring.distributed import MANIFEST, partition_name

    frame = planted_frame(40)
    out = tmp_path / "ray-out"
    out.mkdir()
    for k in range(2):
        frame.iloc[k * 22:(k + 1) * 22].to_parquet(out / partition_name(k, "parquet"), index=False)
    manifest = {"input": {"name": "posts.csv", "rows": len(frame)}, "format": "parquet", "partitions": 3,
                "columns": {"image_column": "image", "images_root": str(tmp_path / "pictures")},
                "head": {"version": "gone-version", "sha256": "abc"}, "partition_rows": 22}
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert cli.main(["runs", "add", str(out)]) == 2                      # 2 of 3 partitions: not finished
    assert "2 of 3 partitions" in capsys.readouterr().err
    manifest["partitions"] = 2
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert cli.main(["runs", "add", str(out), "--name", "cluster run"]) == 0
    run = open_run(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("run: "))
    assert run.name == "cluster run" and run.record.engine == "ray" and run.record.rows == len(frame)
    assert run.record.head == {"version": "gone-version", "weights_sha256": "abc"}
    rows = pd.read_parquet(run.rows_path)
    assert rows["image_path"].iloc[0] == str(tmp_path / "pictures" / frame["image"].iloc[0])
