"""Batch scoring page driven with AppTest: a CSV + images with a bad row in it."""
from __future__ import annotations

import pandas as pd

from .conftest import button, make_pair_set, open_page, texts


def test_score_a_csv_with_images_and_a_bad_row(app_env, tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=2, seed=11)
    frame = pd.read_csv(csv)
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

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows scored"] == "6" and metrics["Bad rows"] == "1"
    assert "1 bad row were not scored" in "\n".join(e.label for e in at.expander)
    result = at.session_state["batch"]["result"].frame
    bad = result[result["status"] == "error"]
    assert list(bad["id"]) == ["bad"] and "image file not found" in bad["message"].iloc[0]
    assert {"p_text_positive", "p_image_positive", "p_fused_positive", "prediction", "conflict"} <= set(result.columns)
    assert "Against your labels" in texts(at)
    assert len(at.get("plotly_chart")) >= 3 + 3  # distribution, confidence, 3 confusion matrices, reliability

    download = next(w for w in at.get("download_button") if w.proto.label == "Download the scored CSV")
    assert download is not None
    from core.data import to_safe_csv_bytes
    assert b"'=HYPERLINK" in to_safe_csv_bytes(result)

    at.checkbox(key="batch_only_conflicts").check().run()
    assert not at.exception

    wrong = [b for b in at.button if b.key == "batch_send_wrong"]
    if wrong:  # the fixture head may get every drawn pair right
        wrong[0].click().run()
        assert len(at.session_state["corrections"]) >= 1


def test_unreadable_csv_is_a_friendly_error(app_env):
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("empty.csv", b"   ", "text/csv")).run()
    assert at.error and "the file is empty" in at.error[0].value
    assert not at.exception


def test_server_folder_outside_the_data_root_is_refused(app_env, tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=1, seed=12)
    at = open_page("batch")
    at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
    at.radio(key="batch_image_source").set_value("A folder on the server").run()
    at.text_input(key="batch_images_server").input("/etc").run()
    assert at.error and "outside the data folder" in at.error[0].value


def test_a_run_that_breaks_midway_keeps_its_rows_and_resumes(app_env, tmp_path, monkeypatch):
    import core.batch

    csv = make_pair_set(tmp_path, n_per_class=30, seed=13)  # 90 rows: two chunks of 64
    images = sorted((tmp_path / "images").iterdir())
    real_chunk, calls = core.batch.score_chunk, []

    def breaks_once_on_the_second_chunk(rows, predictor):
        calls.append(len(rows))
        if len(calls) == 2:
            raise MemoryError("the machine ran out of memory")
        return real_chunk(rows, predictor)

    monkeypatch.setattr(core.batch, "score_chunk", breaks_once_on_the_second_chunk)
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
