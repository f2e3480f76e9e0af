"""Correction page driven with AppTest: upload labelled pairs, train, save, activate, roll back."""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import pytest

from .conftest import button, make_pair_set, new_app, open_page, texts


@pytest.fixture()
def fresh_home(app_env, tmp_path, monkeypatch):
    """A registry of its own for one test (nothing saved or activated yet); the fixture head stays builtin."""
    home = tmp_path / "home"
    monkeypatch.setenv("MMSA_HOME", str(home))
    return home


def upload_pairs(at, folder, n_per_class=3, seed=21):
    """Put a labelled CSV and a zip of its images into the upload tab and add them; returns the CSV path."""
    csv = make_pair_set(folder, n_per_class=n_per_class, seed=seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image in (folder / "images").iterdir():
            archive.write(image, f"images/{image.name}")
    at.file_uploader(key="correct_csv").set_value(("labelled.csv", csv.read_bytes(), "text/csv"))
    at.file_uploader(key="correct_images").set_value(("images.zip", buffer.getvalue(), "application/zip")).run()
    button(at, "correct_add_upload").click().run()
    assert not at.error, [e.value for e in at.error]
    return csv


def train(at, epochs=5):
    at.number_input(key="correct_epochs").set_value(epochs).run()
    button(at, "correct_train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_train_save_and_roll_back_a_correction(app_env, tmp_path):
    from core.registry import open_registry

    at = open_page("correct")
    assert not at.error, [e.value for e in at.error]
    builtin = at.selectbox(key="correct_version").value
    assert builtin == open_registry().active_version()  # the page opens on the version being served
    assert len(at.session_state["corrections"]) == 0
    upload_pairs(at, tmp_path)
    assert len(at.session_state["corrections"]) == 9

    train(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Correction pairs right"].endswith("/ 9")
    assert any(label.startswith("Fused accuracy") for label in metrics)

    at.text_input(key="correct_note").input("drawn pairs").run()
    at.checkbox(key="correct_activate_now").check().run()
    button(at, "correct_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "and made it active for everyone" in texts(at)
    active = at.selectbox(key="correct_version").value
    assert active != builtin

    # What other sessions now get: the saved version is active in the shared registry.
    registry = open_registry()
    assert registry.active_version() == active
    assert registry.card(active).note == "drawn pairs" and registry.card(active).parent == builtin

    button(at, "correct_rollback").click().run()
    assert not at.error
    assert registry.active_version() == builtin
    assert f"Rolled back: version {builtin} is active again" in texts(at)


def test_saving_without_ticking_activate_changes_nothing_for_anyone(fresh_home, tmp_path):
    from core.registry import open_registry

    at = open_page("correct")
    before = open_registry().active_version()
    upload_pairs(at, tmp_path)
    train(at, epochs=2)
    button(at, "correct_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "not active: activate it below when ready" in texts(at)
    registry = open_registry()
    assert registry.active_version() == before
    assert len(registry.versions()) == 2  # the saved version is there, just not served


def test_the_correction_set_tab_counts_the_pairs_just_added(fresh_home, tmp_path):
    at = open_page("correct")
    assert at.tabs[0].label == "Your correction set (0)"
    upload_pairs(at, tmp_path)
    assert "Added 9 pair(s); the correction set now holds 9." in texts(at)
    assert at.tabs[0].label == "Your correction set (9)"
    assert "Empty." not in texts(at)
    assert len(at.tabs[0].dataframe[0].value) == 9  # the table of the pairs just added


def test_uploaded_pairs_keep_the_ids_of_their_csv(fresh_home, tmp_path):
    import pandas as pd

    at = open_page("correct")
    csv = upload_pairs(at, tmp_path)
    want = pd.read_csv(csv)["id"].tolist()  # "positive-21-0", ...
    assert [item.id for item in at.session_state["corrections"].items] == want
    assert at.tabs[0].dataframe[0].value["id"].tolist() == want


def test_training_draws_one_loss_chart_and_one_accuracy_chart(fresh_home, tmp_path):
    at = open_page("correct")
    upload_pairs(at, tmp_path)
    train(at, epochs=3)
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    names = [[trace.get("name", "") for trace in figure["data"]] for figure in figures]
    loss = [n for n in names if "Loss" in n]
    accuracy = [n for n in names if "Correction pairs right" in n]
    assert len(loss) == 1 and len(accuracy) == 1, names  # the live chart gave way to the final one
    assert not any("loss" in name.lower() for name in accuracy[0]), accuracy[0]

    at.run()  # and the next run still shows it once
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert sum("Correction pairs right" in [t.get("name") for t in f["data"]] for f in figures) == 1


def test_roll_back_is_disabled_with_nothing_to_roll_back_to(fresh_home):
    from core.registry import open_registry

    at = open_page("correct")  # only the builtin has ever been active
    rollback = button(at, "correct_rollback")
    assert rollback.disabled
    assert "no earlier active version" in rollback.help

    registry = open_registry()
    tensors, card = registry.load(registry.active_version())
    tensors = {name: t + 0.01 for name, t in tensors.items()}
    other = registry.save(tensors, card)
    registry.activate(other)
    at.run()
    assert not button(at, "correct_rollback").disabled


def test_upload_a_version_zip_once_and_refuse_it_again_and_garbage(fresh_home, tmp_path):
    from core.registry import HeadRegistry, open_registry

    # A version made on another machine with the same encoders.
    elsewhere = HeadRegistry(tmp_path / "elsewhere", builtin=open_registry().builtin)
    tensors, card = elsewhere.load("builtin")
    made = elsewhere.save({name: t + 0.01 for name, t in tensors.items()}, card, note="made elsewhere")
    exported = elsewhere.export_zip(made)

    at = open_page("correct")
    at.file_uploader(key="correct_import").set_value(("head.zip", exported, "application/zip")).run()
    button(at, "correct_import_button").click().run()
    assert not at.error and "Imported as version" in texts(at)
    registry = open_registry()
    imported = next(c["version"] for c in registry.versions() if c.get("imported_from") == made)
    listed = [c["version"] for c in registry.versions()]

    button(at, "correct_import_button").click().run()  # the same zip again
    assert at.error and f"Not imported: version {imported} is already here" in at.error[0].value
    assert "Imported as version" not in texts(at)
    assert [c["version"] for c in registry.versions()] == listed

    at.file_uploader(key="correct_import").set_value(("bad.zip", b"not a zip", "application/zip")).run()
    button(at, "correct_import_button").click().run()
    assert at.error and "cannot be used here" in at.error[0].value
    assert not at.exception


def test_empty_correction_set_cannot_train(app_env):
    at = open_page("correct")
    assert button(at, "correct_train").disabled
    assert "Empty." in texts(at)


def test_the_versions_table_scores_every_version_on_the_same_pairs(fresh_home, tmp_path):
    """A saved correction and the version it came from are compared on the same held-out reference
    pairs, not on whatever data each card happens to record."""
    from app.examples import load_reference_set
    from app_pages.common import engine
    from core.heads.correction_set import head_accuracies
    from core.registry import open_registry
    from core.scoring.predict import heads_from_card

    at = open_page("correct")
    upload_pairs(at, tmp_path)
    train(at, epochs=2)
    button(at, "correct_save").click().run()
    assert not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "version" in d.value.columns and "note" in d.value.columns)
    column = next(c for c in table.columns if c.startswith("fused accuracy, "))
    eng = engine()
    _, check = load_reference_set(eng.text_encoder, eng.image_encoder, eng.store).split()
    assert column == f"fused accuracy, {len(check)} held-out reference pairs"
    registry = open_registry()
    assert len(table) == len(registry.versions()) == 2
    for _, row in table.iterrows():
        expected = head_accuracies(heads_from_card(*registry.load(row["version"])), check)["fused"]
        assert row[column] == f"{expected * 100:.1f}%"
    assert f"same {len(check)} held-out pairs" in texts(at)


def versions_table(at):
    return next(d.value for d in at.dataframe if "version" in d.value.columns and "note" in d.value.columns)


def fused_column(table) -> str:
    return next(c for c in table.columns if c.startswith("fused accuracy, "))


def test_a_version_trained_on_other_encoders_says_so_instead_of_a_figure(fresh_home):
    from core.registry import open_registry

    registry = open_registry()
    tensors, card = registry.load(registry.active_version())
    # Same sizes, other encoder: its figures on our features would be meaningless, not merely low.
    other_encoder = dataclasses.replace(card.text_encoder, id="text:another-encoder:1")
    other = registry.save({name: t + 0.01 for name, t in tensors.items()}, card.replace(text_encoder=other_encoder))
    at = open_page("correct")
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = versions_table(at).set_index("version")
    assert table.loc[other, fused_column(table)] == "– (other encoders)"
    assert table.loc[registry.active_version(), fused_column(table)].endswith("%")


def test_a_fault_while_scoring_the_versions_is_logged_and_shown_not_passed_off_as_other_encoders(
        fresh_home, monkeypatch, caplog):
    import logging

    import streamlit as st

    import core.heads.correction_set

    def broken(model, data):
        raise RuntimeError("a fault in the scoring code")

    st.cache_data.clear()  # figures cached by earlier tests would hide the fault
    monkeypatch.setattr(core.heads.correction_set, "head_accuracies", broken)
    with caplog.at_level(logging.ERROR, logger="app_pages.correct"):
        at = new_app().run()
        at.switch_page("app_pages/correct.py").run()  # not open_page: the page shows the fault on purpose
    table = versions_table(at)
    assert set(table[fused_column(table)]) == {"– (not scored: see the message below the table)"}
    assert any("could not be scored" in e.value and "server log" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert [e.message for e in at.exception] == ["a fault in the scoring code"]
    logged = [r for r in caplog.records if r.name == "app_pages.correct"]
    assert logged and logged[0].exc_info and "a fault in the scoring code" in str(logged[0].exc_info[1])
    assert button(at, "correct_rollback") and button(at, "correct_delete")  # the versions stay usable



def test_a_version_links_to_its_comparison_on_the_latest_run(fresh_home):
    from core.runs import save_run
    from tests.planted import planted_frame

    at = open_page("correct")
    assert not [p for p in at.get("page_link") if p.proto.page == "analyse"]      # no run saved yet
    run = save_run(planted_frame(20), source="posts.csv", engine="cli")
    at.run()
    chosen = at.selectbox(key="correct_version").value
    link = next(p for p in at.get("page_link") if p.proto.page == "analyse")
    assert link.proto.query_string == f"run={run.id}&compare={chosen}"
