"""A batch run saved chunk by chunk: it is found again only for the very same pictures (by their content,
not their names and sizes), and reading it back never destroys work that a passing error could not prove
damaged."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from app.batch_runs import SavedRun
from core.features.store import FeatureStore
from core.scoring.batch import score_rows

from .conftest import button, fake_predictor, open_page

# ----- the key: content, not names and sizes -----------------------------------------------------------

def pictures(folder: Path, colours) -> list[Path]:
    """Uncompressed PNGs of one size: other colours give other pixels in files of exactly the same size."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, colour in enumerate(colours):
        path = folder / f"photo_{k}.png"
        Image.new("RGB", (48, 36), colour).save(path, compress_level=0)
        paths.append(path)
    return paths


def upload(at, csv: Path, images: list[Path]):
    at.file_uploader(key="batch_csv").set_value((csv.name, csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    at.file_uploader(key="batch_images_files").set_value([(p.name, p.read_bytes(), "image/png") for p in images]).run()
    assert not at.exception, at.exception
    return at


def test_other_pictures_under_the_same_names_and_sizes_are_scored_afresh_not_resumed(app_env, tmp_path):
    sunny = pictures(tmp_path / "sunny", [(250, 200, 60), (240, 210, 80), (255, 190, 40)])
    gloomy = pictures(tmp_path / "gloomy", [(30, 40, 70), (20, 30, 60), (40, 50, 80)])
    assert [p.name for p in sunny] == [p.name for p in gloomy]
    assert [p.stat().st_size for p in sunny] == [p.stat().st_size for p in gloomy]
    csv = tmp_path / "posts.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "text": ["at the beach", "lunch", "my street"],
                  "image": [p.name for p in sunny]}).to_csv(csv, index=False)

    first = upload(open_page("batch"), csv, sunny)
    button(first, "batch_score").click().run()
    sunny_scores = first.session_state["batch"]["result"].frame
    assert len(sunny_scores) == 3

    # Another tab, the same table, the same file names and sizes, other pictures: nothing is resumed ...
    other = upload(open_page("batch"), csv, gloomy)
    assert "batch" not in other.session_state and "Results" not in [s.value for s in other.subheader]
    # ... and scoring reads the new pictures, not the old folder.
    button(other, "batch_score").click().run()
    gloomy_scores = other.session_state["batch"]["result"].frame
    assert not gloomy_scores["p_image_positive"].equals(sunny_scores["p_image_positive"])

    # The same pictures again are found again (the saved run is keyed on them).
    again = upload(open_page("batch"), csv, sunny)
    pd.testing.assert_frame_equal(again.session_state["batch"]["result"].frame, sunny_scores)


# ----- reading saved chunks -----------------------------------------------------------------------------

@pytest.fixture()
def saved(mmsa_home, table):
    """A run of the ten-row table saved in four chunks (rows 0-2, 3-5, 6-8, 9)."""
    run = SavedRun("some-job", len(table["rows"]))
    result = score_rows(table["rows"], fake_predictor(store=FeatureStore(None)), chunk_size=3, on_chunk=run.append)
    assert result.finished and run.finished
    return run, result.frame


def chunk_files(run: SavedRun) -> list[str]:
    return sorted(p.name for p in run.folder.glob("rows-*.parquet"))


def test_a_saved_run_reads_back_as_it_was_scored(saved):
    run, scored = saved
    pd.testing.assert_frame_equal(run.frame(), scored)


@pytest.mark.parametrize("damage", ["garbage", "cut off", "other columns"])
def test_a_chunk_proven_damaged_is_deleted_alone_and_the_rows_before_it_are_kept(saved, damage, caplog):
    run, scored = saved
    files = chunk_files(run)
    second = run.folder / files[1]
    if damage == "garbage":
        second.write_bytes(b"this is not a parquet file")
    elif damage == "cut off":
        second.write_bytes(second.read_bytes()[:-40])
    else:
        pd.DataFrame({"something": ["else"] * 3}).to_parquet(second)
    with caplog.at_level(logging.WARNING, logger="app.batch_runs"):
        frame = run.frame()
    pd.testing.assert_frame_equal(frame, scored.head(3))
    assert chunk_files(run) == [files[0], files[2], files[3]]  # only the damaged one went
    assert run.completed == 3  # a resume scores again from row 4
    assert any("damaged" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), RuntimeError("a fault of the program")])
def test_a_chunk_that_fails_to_read_for_another_reason_is_kept_and_the_error_logged(saved, error, monkeypatch, caplog):
    import app.batch_runs

    run, scored = saved
    files = chunk_files(run)
    real = app.batch_runs._read_chunk

    def failing_on_the_second(path, n_rows):
        if path.name == files[1]:
            raise error
        return real(path, n_rows)

    monkeypatch.setattr(app.batch_runs, "_read_chunk", failing_on_the_second)
    with caplog.at_level(logging.ERROR, logger="app.batch_runs"):
        frame = run.frame()
    pd.testing.assert_frame_equal(frame, scored.head(3))  # this time: the rows before it
    assert chunk_files(run) == files  # nothing deleted
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged and logged[0].exc_info and logged[0].exc_info[1] is error  # with its traceback

    monkeypatch.setattr(app.batch_runs, "_read_chunk", real)  # the passing error has passed
    pd.testing.assert_frame_equal(run.frame(), scored)  # no row was lost


def test_a_chunk_the_disk_cannot_read_right_now_is_kept(saved, monkeypatch):
    run, scored = saved
    files = chunk_files(run)
    real = Path.read_bytes

    def disk_error(self):
        if self.name == files[2]:
            raise OSError(5, "Input/output error")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", disk_error)
    assert len(run.frame()) == 6
    monkeypatch.setattr(Path, "read_bytes", real)
    assert chunk_files(run) == files
    pd.testing.assert_frame_equal(run.frame(), scored)
