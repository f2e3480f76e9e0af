"""Batch scoring page driven with AppTest: a CSV + images with a bad row in it."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from core.io.labels import LABELS

from .conftest import button, make_pair_set, open_page, texts


@pytest.fixture()
def downloads(monkeypatch) -> dict:
    """What each download button on the page would hand over, by its label."""
    import streamlit as st

    handed_over, real = {}, st.download_button

    def recording(label, data, *args, **kwargs):
        handed_over[label] = data
        return real(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", recording)
    return handed_over


def scored_rows_table(at) -> pd.DataFrame:
    """The "Scored rows" table (the only one on the page with the probability columns)."""
    tables = [d.value for d in at.dataframe if "p_fused_positive" in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def test_score_a_csv_with_images_and_a_bad_row(app_env, tmp_path, downloads):
    from core.io.tables import to_safe_csv_bytes

    csv = make_pair_set(tmp_path, n_per_class=2, seed=11)
    frame = pd.read_csv(csv)
    first_positive, first_negative = frame.iloc[0], frame[frame["label"] == "negative"].iloc[0]
    # The same pair twice under two labels: whatever the head answers, at least one of them is wrong.
    frame.loc[len(frame)] = {"id": "relabelled", "text": first_positive["text"], "image": first_positive["image"],
                             "label": "negative"}
    # Cheerful words over a dark picture: the text and the image heads disagree (a modality conflict).
    frame.loc[len(frame)] = {"id": "mixed", "text": first_positive["text"], "image": first_negative["image"],
                             "label": "positive"}
    frame.loc[len(frame)] = {"id": "bad", "text": "=HYPERLINK(\"http://x\")", "image": "missing.png", "label": "positive"}
    images = sorted((tmp_path / "images").iterdir())

    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", frame.to_csv(index=False).encode(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    at.file_uploader(key="batch_images_files").set_value([(p.name, p.read_bytes(), "image/png") for p in images]).run()
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="batch_label_col").value == "label"
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    result = at.session_state["batch"]["result"].frame
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows scored"] == "8" and metrics["Bad rows"] == "1"
    assert "1 bad row were not scored" in "\n".join(e.label for e in at.expander)
    bad = result[result["status"] == "error"]
    assert list(bad["id"]) == ["bad"] and "image file not found" in bad["message"].iloc[0]
    assert {"p_text_positive", "p_image_positive", "p_fused_positive", "prediction", "conflict"} <= set(result.columns)
    by_id = result.set_index("id")
    assert bool(by_id.loc["mixed", "conflict"]), by_id.loc["mixed"]
    assert metrics["Modality conflicts"] == str(int(result["conflict"].sum()))
    assert "Against your labels" in texts(at)
    # Eight labelled pairs scored: the page says how rough its figures are, with the interval it shows.
    metrics_table = next(d.value for d in at.dataframe if "Accuracy, 95 % interval" in d.value.columns)
    small = [w.value for w in at.warning if "Only 8 labelled pairs" in w.value]
    assert small and metrics_table["Accuracy, 95 % interval"].iloc[0] in small[0].replace("here ", "")
    assert "read the diagram as noise" in texts(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 3 + 3  # distribution, confidence, 3 confusion matrices, reliability
    # Each one exports itself as a PNG (the camera button), named after what it shows.
    exports = [json.loads(c.proto.config)["toImageButtonOptions"] for c in charts]
    assert all(e["format"] == "png" for e in exports) and "reliability" in {e["filename"] for e in exports}

    # What the download button hands over is the scored table with its formulas made inert.
    assert [w.proto.label for w in at.get("download_button")] == ["Download the charts and metrics (HTML report)",
                                                                  "Download the scored CSV"]
    from app.batch_report import download_frame

    expected = download_frame(result, at.session_state["batch"]["table"])
    assert downloads["Download the scored CSV"] == to_safe_csv_bytes(expected)
    assert len(expected) == len(result) and list(expected["id"]) == list(result["id"])
    assert b"'=HYPERLINK" in downloads["Download the scored CSV"]

    # "Show only modality conflicts" narrows the scored rows to the flagged ones.
    assert len(scored_rows_table(at)) == len(result) == 9
    at.checkbox(key="batch_only_conflicts").check().run()
    assert not at.exception
    only_conflicts = scored_rows_table(at)
    assert sorted(only_conflicts["id"]) == sorted(result.loc[result["conflict"], "id"])
    assert "mixed" in set(only_conflicts["id"]) and len(only_conflicts) < len(result)

    ok = result[result["status"] != "error"]
    wrong = ok[ok["prediction"] != ok["label"]]
    assert len(wrong) >= 1 and {"relabelled", first_positive["id"]} & set(wrong["id"]), ok[["id", "label", "prediction"]]
    assert f"{len(wrong)} labelled pair" in texts(at)
    button(at, "batch_send_wrong").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # One correction per distinct pair, with the label from the CSV (a pair listed under two labels
    # keeps the last one).
    expected = {(row["text"], row["image"]): row["label"] for _, row in wrong.iterrows()}
    sent = at.session_state["corrections"].items
    assert sorted((item.text, item.image_name, item.label) for item in sent) == \
        sorted((text, image, label) for (text, image), label in expected.items())
    assert {item.source for item in sent} == {"batch"}


def test_unreadable_csv_is_a_friendly_error(app_env):
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("empty.csv", b"   ", "text/csv")).run()
    assert at.error and "the file is empty" in at.error[0].value
    assert not at.exception


def test_a_good_table_after_one_with_wrong_columns_gets_its_columns_guessed(app_env, tmp_path):
    """No box can be guessed for a table of other columns; the right table that replaces it gets
    every box filled in again, not left at "(none)"."""
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("wrong.csv", b"post,picture_of\nhello,a.png\n", "text/csv")).run()
    boxes = ("batch_text_col", "batch_image_col", "batch_label_col", "batch_id_col")
    assert [at.selectbox(key=k).value for k in boxes] == ["(none)"] * 4
    csv = make_pair_set(tmp_path, n_per_class=1, seed=10)
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
    assert not at.exception
    assert [at.selectbox(key=k).value for k in boxes] == ["text", "image", "label", "id"]

    # A choice made for this table stays while the table does.
    at.selectbox(key="batch_label_col").set_value("(none)").run()
    at.run()
    assert at.selectbox(key="batch_label_col").value == "(none)"


def test_server_folder_outside_the_data_root_is_refused(app_env, tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=1, seed=12)
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("A folder on the server").run()
    at.text_input(key="batch_images_server").input("/etc").run()
    assert at.error and "outside the data folder" in at.error[0].value


def second_chunk_fails_once(monkeypatch, error: Exception) -> list[int]:
    """Scoring breaks with ``error`` in the second chunk, once; returns the sizes of the chunks scored."""
    import core.scoring.batch

    real_chunk, calls = core.scoring.batch.score_chunk, []

    def fails_once(rows, predictor):
        calls.append(len(rows))
        if len(calls) == 2:
            raise error
        return real_chunk(rows, predictor)

    monkeypatch.setattr(core.scoring.batch, "score_chunk", fails_once)
    return calls


def test_a_run_that_breaks_midway_keeps_its_rows_and_resumes(app_env, tmp_path, monkeypatch):
    csv = make_pair_set(tmp_path, n_per_class=30, seed=13)  # 90 rows: two chunks of 64
    images = sorted((tmp_path / "images").iterdir())
    calls = second_chunk_fails_once(monkeypatch, MemoryError("the machine ran out of memory"))
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    at.file_uploader(key="batch_images_files").set_value([(p.name, p.read_bytes(), "image/png") for p in images]).run()
    button(at, "batch_score").click().run()
    assert at.error and "stopped early" in at.error[0].value and "64 rows scored so far" in at.error[0].value
    assert len(at.session_state["batch"]["result"].frame) == 64

    button(at, "batch_resume").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["batch"]["result"]
    assert result.finished and len(result.frame) == 90
    assert calls == [64, 26, 26]  # the first 64 rows were not scored again


def test_a_stopped_run_is_found_again_after_a_server_restart_and_resumed(app_env, tmp_path, monkeypatch):
    """Every finished chunk is saved under the data folder: a run stopped by the Stop button, a crash or
    a restart is offered again to whoever opens the same table, images and columns, and resuming
    scores only the rows that were missing."""
    csv = make_pair_set(tmp_path, n_per_class=30, seed=14)  # 90 rows: two chunks of 64
    images = sorted((tmp_path / "images").iterdir())
    calls = second_chunk_fails_once(monkeypatch, SystemError("the server went down"))
    first_tab = open_page("batch")
    _upload_table_and_images(first_tab, csv, images)
    button(first_tab, "batch_score").click().run()
    kept = first_tab.session_state["batch"]["result"].frame
    assert len(kept) == 64

    after_restart = open_page("batch")  # a new tab: nothing in memory, the same files uploaded again
    _upload_table_and_images(after_restart, csv, images)
    assert any("64 rows scored so far" in e.value for e in after_restart.error), [e.value for e in after_restart.error]
    button(after_restart, "batch_resume").click().run()
    assert not after_restart.exception and not after_restart.error, [e.value for e in after_restart.error]
    result = after_restart.session_state["batch"]["result"]
    assert result.finished and result.frame["row"].tolist() == list(range(90))
    assert calls == [64, 26, 26]  # nothing scored twice
    pd.testing.assert_frame_equal(result.frame.head(64), kept, check_dtype=False)


def _upload_table_and_images(at, csv, images):
    at.file_uploader(key="batch_csv").set_value((csv.name, csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    at.file_uploader(key="batch_images_files").set_value([(p.name, p.read_bytes(), "image/png") for p in images]).run()


def test_replacing_the_csv_keeps_the_chosen_images(app_env, tmp_path):
    """A user swaps one CSV for another over the same image folder: the image choice and the uploaded
    pictures stay, so the new table scores without a single 'no image folder' row."""
    first = make_pair_set(tmp_path, n_per_class=1, seed=21, name="first.csv")
    second = make_pair_set(tmp_path, n_per_class=2, seed=22, name="second.csv")
    at = open_page("batch")
    _upload_table_and_images(at, first, sorted((tmp_path / "images").iterdir()))
    at.file_uploader(key="batch_csv").set_value(None).run()  # the old CSV is removed …
    at.file_uploader(key="batch_csv").set_value(("second.csv", second.read_bytes(), "text/csv")).run()  # … a new one comes
    assert at.radio(key="batch_image_source").value == "Upload image files"
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Bad rows"] == "0" and metrics["Rows scored"] == "6"


def test_score_is_refused_before_any_row_is_marked_bad_when_no_images_were_given(app_env, tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=1, seed=23)
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("Upload image files").run()
    button(at, "batch_score").click().run()
    assert not at.exception
    assert at.error and "no images were given" in at.error[0].value.lower()
    assert "batch" not in at.session_state


def test_results_belong_to_the_table_they_came_from(app_env, tmp_path):
    first = make_pair_set(tmp_path, n_per_class=1, seed=24, name="first.csv")
    second = make_pair_set(tmp_path, n_per_class=1, seed=25, name="second.csv")
    at = open_page("batch")
    _upload_table_and_images(at, first, sorted((tmp_path / "images").iterdir()))
    button(at, "batch_score").click().run()
    assert "Results" in [s.value for s in at.subheader]
    at.file_uploader(key="batch_csv").set_value(("second.csv", second.read_bytes(), "text/csv")).run()
    assert "Results" not in [s.value for s in at.subheader]
    assert not [d for d in at.dataframe if "p_fused_positive" in d.value.columns]
    assert "first.csv" in texts(at) and "Score this table" in texts(at)


def test_scored_rows_count_lines_like_the_bad_rows_and_the_download_keeps_every_input_column(app_env, tmp_path,
                                                                                           downloads):
    csv = make_pair_set(tmp_path, n_per_class=1, seed=26)
    frame = pd.read_csv(csv, dtype=str)
    frame["text_label"] = "neutral"  # a column the scorer does not map
    frame.loc[len(frame)] = {"id": "bad", "text": "hi", "image": "missing.png", "label": "positive",
                             "text_label": "positive"}
    table_csv = tmp_path / "with-extra.csv"
    frame.to_csv(table_csv, index=False)
    at = open_page("batch")
    _upload_table_and_images(at, table_csv, sorted((tmp_path / "images").iterdir()))
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = scored_rows_table(at)
    assert "row" not in shown.columns and list(shown["line in CSV"]) == list(range(2, len(frame) + 2))
    bad_listing = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(bad_listing["line in CSV"]) == [len(frame) + 1]  # the last line of the file, header = line 1
    # The answer sits next to the id, before the long text and the probability columns.
    assert list(shown.columns[:6]) == ["line in CSV", "picture", "id", "prediction", "confidence", "conflict"]
    # A small picture beside each pair; none for the row whose image is missing.
    pictures = dict(zip(shown["id"], shown["picture"]))
    assert pd.isna(pictures["bad"])
    assert all(str(uri).startswith("data:image/jpeg;base64,") for i, uri in pictures.items() if i != "bad")
    downloaded = pd.read_csv(io.BytesIO(downloads["Download the scored CSV"]), dtype=str, encoding="utf-8-sig")
    assert list(downloaded["text_label"]) == list(frame["text_label"])
    assert list(downloaded["line in CSV"]) == [str(n) for n in range(2, len(frame) + 2)]


def test_results_can_be_sliced_and_the_download_follows_the_slice(app_env, tmp_path, downloads):
    csv = make_pair_set(tmp_path, n_per_class=3, seed=27)
    at = open_page("batch")
    _upload_table_and_images(at, csv, sorted((tmp_path / "images").iterdir()))
    button(at, "batch_score").click().run()
    result = at.session_state["batch"]["result"].frame
    assert f"Showing {len(result)} of {len(result)} rows." in texts(at)

    assert result["prediction"].nunique() > 1  # drawn pairs of three moods: the head answers more than one way
    predicted = result["prediction"].value_counts().index[-1]  # a class the head predicts, not for every row
    at.multiselect(key="batch_filter_classes").set_value([predicted]).run()
    shown = scored_rows_table(at)
    expected = result[result["prediction"] == predicted]
    assert list(shown["id"]) == list(expected["id"]) and set(shown["prediction"]) == {predicted}
    assert f"Showing {len(expected)} of {len(result)} rows." in texts(at)
    filtered = pd.read_csv(io.BytesIO(downloads[f"Download the {len(expected)} rows shown"]), dtype=str,
                           encoding="utf-8-sig")
    assert list(filtered["id"]) == list(expected["id"])

    at.multiselect(key="batch_filter_classes").set_value(list(LABELS)).run()
    at.slider(key="batch_filter_confidence").set_range(90, 100).run()
    confident = result[result["confidence"] >= 0.9]
    assert list(scored_rows_table(at)["id"]) == list(confident["id"])

    at.slider(key="batch_filter_confidence").set_range(0, 100).run()
    at.checkbox(key="batch_only_wrong").check().run()
    wrong = result[result["prediction"] != result["label"]]
    assert list(scored_rows_table(at)["id"]) == list(wrong["id"])


def test_a_scored_batch_exports_one_html_report_and_explains_its_words(app_env, tmp_path, downloads):
    csv = make_pair_set(tmp_path, n_per_class=2, seed=28)
    at = open_page("batch")
    _upload_table_and_images(at, csv, sorted((tmp_path / "images").iterdir()))
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error
    report = downloads["Download the charts and metrics (HTML report)"].decode()
    assert report.startswith("<!DOCTYPE html>") and "Against the labels" in report and "Weighted F1" in report
    # Every chart of the page is in it (plotly.js once, inline: it opens offline).
    for title in ("Predicted classes", "Confidence", "Confusion matrix — Fused", "Reliability"):
        assert f"<h2>{title}</h2>" in report
    assert report.count("plotly.js v") == 1 and "<script src=" not in report
    glossary = next(e for e in at.expander if e.label == "What the words mean")
    words = "\n".join(m.value for m in glossary.markdown)
    assert "Weighted F1" in words and "Modality conflict" in words and "Calibration" in words


def test_unlabelled_pairs_are_offered_least_sure_first_and_go_to_the_correction_set(app_env, tmp_path):
    from app.batch_report import worth_labelling

    csv = make_pair_set(tmp_path, n_per_class=2, seed=29)
    table = pd.read_csv(csv, dtype=str).drop(columns=["label"])  # a table without labels
    unlabelled = tmp_path / "unlabelled.csv"
    table.to_csv(unlabelled, index=False)
    at = open_page("batch")
    _upload_table_and_images(at, unlabelled, sorted((tmp_path / "images").iterdir()))
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error
    assert "Label where it pays" in [s.value for s in at.subheader]
    frame = at.session_state["batch"]["result"].frame
    ranked = worth_labelling(frame, len(frame))
    assert list(ranked["priority"]) == sorted(ranked["priority"], reverse=True) and len(ranked) == len(frame)
    at.slider(key="batch_al_n").set_value(3).run()
    offered = [s.key for s in at.selectbox if s.key and s.key.startswith("batch_al_")]
    assert offered == [f"batch_al_{r}" for r in ranked["row"][:3]]  # the three least sure, in that order
    assert at.button(key="batch_al_send").disabled
    at.selectbox(key=offered[0]).set_value("neutral").run()
    at.selectbox(key=offered[2]).set_value("positive").run()
    button(at, "batch_al_send").click().run()
    assert not at.exception and not at.error
    sent = at.session_state["corrections"].items
    rows = list(ranked["row"][:3])
    assert sorted((i.text, i.label) for i in sent) == sorted(
        [(frame.set_index("row").loc[rows[0], "text"], "neutral"), (frame.set_index("row").loc[rows[2], "text"], "positive")])


def test_uploaded_pictures_wiped_from_disk_are_written_again_before_scoring(app_env, tmp_path):
    """A temp cleaner (or a full disk) removes the folder the uploaded pictures were saved in: the next
    score writes them again from the upload instead of listing every row as 'image not found'."""
    import shutil

    csv = make_pair_set(tmp_path, n_per_class=1, seed=31)
    at = open_page("batch")
    _upload_table_and_images(at, csv, sorted((tmp_path / "images").iterdir()))
    shutil.rmtree(at.session_state["batch_images_root"])
    button(at, "batch_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Bad rows"] == "0"
