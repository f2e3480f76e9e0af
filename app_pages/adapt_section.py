"""The Correct page's adaptation mode: upload a labelled set of your own posts (text, a picture where you
have one), see how much the model learns of them on labels it did not see, save it as a version.

Not a page itself: ``app_pages/correct.py`` calls ``adaptation_section``. User text, file names and
column names are shown only in dataframes and st.text, never as Markdown.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.adaptation_view import learning_curve, protocol_text, reference_drop, reference_table, with_interval
from app.charts import export_config
from app.formatting import pct
from app.uploads import extract_images_zip, save_uploaded_files
from app_pages.common import reference_set, session_dir, viewer_reason
from core.access import AccessDenied
from core.heads.adaptation import AdaptationConfig, replay_choice_text
from core.heads.adaptation_run import adapted_card, run_adaptation
from core.heads.training import TrainingRefused
from core.io.images import IMAGE_TYPES
from core.io.paths import UnsafePathError
from core.io.tables import TableError, prepare_pairs, read_table
from core.registry import RegistryError

REPLAY_CHOICES = ["automatic", 0.7, 2.0, 5.0, 10.0, 30.0]
TEXT_REPLAY_CHOICES = ["automatic", 0.0, 0.3, 0.7, 1.0]


def _has_column(table: pd.DataFrame, name: str) -> bool:
    return any(str(c).strip().lower() == name for c in table.columns)


def _rows(csv_file, images) -> list:
    """The uploaded CSV's rows, checked; its pictures (files or one zip) saved under this tab's folder."""
    table = read_table(csv_file.getvalue())
    root = None
    if images:
        folder = session_dir("adapt")
        target = folder / f"upload-{sum(1 for _ in folder.iterdir())}"  # a new folder per upload
        zips = [f for f in images if f.name.lower().endswith(".zip")]
        root = (extract_images_zip(zips[0].getvalue(), target) if zips
                else save_uploaded_files([(f.name, f.getvalue()) for f in images], target)[0])
    return prepare_pairs(table, image_column="image" if _has_column(table, "image") else None, label_column="label",
                         id_column="id" if _has_column(table, "id") else None,
                         images_root=Path(root) if root else None, require_label=True)


def _settings() -> AdaptationConfig:
    with st.expander("Adaptation settings"):
        s1, s2 = st.columns(2)
        replay = s1.select_slider("Weight of the reference (heads that see pictures)", REPLAY_CHOICES,
                                  value="automatic", key="adapt_replay",
                                  help="How much the replayed reference pairs count, as a share of your labels: "
                                       "more keeps the reference, less follows your posts. Automatic: the smallest "
                                       "that keeps the reference's fused accuracy within 1.5 points on the replayed "
                                       "pairs (each measured by a fit that did not replay it), so it stays within 3 "
                                       "on pairs never replayed.")
        text = s2.select_slider("Weight of the reference for the text head", TEXT_REPLAY_CHOICES,
                                value="automatic", key="adapt_text_replay",
                                help="Automatic: the weight above times the share of your posts with a picture, "
                                     "so a set without pictures teaches the text head your posts alone.")
    return AdaptationConfig(replay_weight=None if replay == "automatic" else float(replay),
                            text_replay_weight=None if text == "automatic" else float(text))


def _train(eng, version: str, predictor, state) -> None:
    st.caption(f"Starting from the active version {version}. Part of your labels is held out automatically "
               "(cross-validation for sets under 150), so the figures below are measured on posts the adapted "
               "model did not learn from.")
    csv_file = st.file_uploader("Labelled CSV of your posts (columns text and label; image and id optional)",
                                type=["csv", "txt"], key="adapt_csv")
    images = st.file_uploader("Their pictures, if any (files or one zip)", accept_multiple_files=True,
                              type=[*IMAGE_TYPES, "zip"], key="adapt_images")
    config = _settings()
    if not st.button("Adapt to these posts", type="primary", key="adapt_run", disabled=csv_file is None):
        return
    progress = st.progress(0.0, text="Reading the table…")
    try:
        rows = _rows(csv_file, images)
        reference = reference_set(eng)
        replay, check = reference.split()
        run = run_adaptation(predictor, rows, replay, check, config, reference_name=reference.name,
                             on_step=lambda message, done: progress.progress(min(done, 1.0), text=message))
    except (TableError, UnsafePathError, TrainingRefused, OSError) as error:
        progress.empty()
        st.error("This set cannot be used for an adaptation:")
        st.text(str(error))  # may quote the user's column names or file names: plain text
        return
    progress.progress(1.0, text=f"Done in {run.seconds:.1f} s.")
    state["adapt_result"] = {"run": run, "base_version": version, "base_card": predictor.card}


def _results(trained: dict, version: str) -> None:
    run = trained["run"]
    adapter = run.adapter
    if trained["base_version"] != version:
        st.warning(f"The active version changed to {version} since this adaptation started from "
                   f"{trained['base_version']}; saving keeps {trained['base_version']} as its parent.")
    st.caption(protocol_text(adapter.protocol_) + " " + replay_choice_text(adapter.replay_weight_,
                                                                           adapter.replay_choice_))
    verdict = adapter.vs_parent_
    {"better": st.success, "worse": st.warning}.get(verdict["answer"], st.info)(verdict["message"])
    before, after = adapter.evaluation_["before"], adapter.evaluation_["after"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Your held-out posts, adapted", pct(after["accuracy"]),
              delta=f"{(after['accuracy'] - before['accuracy']) * 100:+.1f} points (was {pct(before['accuracy'])})")
    reference = adapter.reference_
    if reference:
        c2.metric(f"Fused accuracy, {reference['n']} reference pairs", pct(reference["after"]["fused"]),
                  delta=f"{(reference['after']['fused'] - reference['before']['fused']) * 100:+.1f} points")
    c3.metric("Time", f"{run.seconds:.1f} s")
    st.caption(f"Before: {with_interval(before)}. After: {with_interval(after)}.")
    left, right = st.columns(2)
    left.plotly_chart(learning_curve(adapter.curve_, before), key="adapt_curve", config=export_config("learning-curve"))
    with right:
        st.markdown("**More labels still worth giving?**")
        st.info(adapter.verdict_["message"])
        if reference:
            st.markdown(f"**Reference set** ({run.reference_name}, {reference['n']} held-out pairs)")
            st.dataframe(reference_table(reference), hide_index=True)
            drop = reference_drop(reference)
            if drop > 3:
                st.warning(f"The reference lost {drop:.1f} points on a branch. Raise the weight of the reference in "
                           "Adaptation settings if posts like the reference's must stay read as before.")
    problems = run.labelled.problems
    with st.expander(f"Posts learned from ({len(run.labelled.table)})" +
                     (f" · {len(problems)} row(s) left out" if problems else "")):
        if problems:
            st.dataframe(pd.DataFrame({"left out": problems}), hide_index=True)
        st.dataframe(run.labelled.table, hide_index=True)


def _save(eng, trained: dict, actor, state) -> None:
    st.markdown("**Save this adaptation**")
    s1, s2 = st.columns([3, 1])
    note = s1.text_input("Note for the adapted version", key="adapt_note", placeholder="e.g. our support tickets")
    activate_now = s2.checkbox("Activate after saving", value=False, key="adapt_activate_now",
                               disabled=not actor.is_operator,
                               help="Makes the saved version the one every user gets." if actor.is_operator else
                                    viewer_reason(actor) + " Your saved version waits for an operator to activate it.")
    if not st.button("Save the adaptation as a new version", key="adapt_save"):
        return
    run = trained["run"]
    card = adapted_card(trained["base_card"], run, base_version=trained["base_version"])
    try:
        new_version = eng.registry.save(run.adapter.model_.tensors(), card, note=note, parent=trained["base_version"])
        if activate_now and actor.is_operator:
            eng.registry.activate(new_version, actor=actor)
    except (RegistryError, AccessDenied) as error:
        st.error("Could not save:")
        st.text(str(error))
        return
    state.pop("adapt_result", None)
    state["adapt_saved"] = new_version, activate_now and actor.is_operator
    state["correct_version_next"] = new_version  # the version list below selects it
    st.rerun()


def adaptation_section(eng, version: str, predictor, actor) -> None:
    """The adaptation mode: upload, adapt, figures, save. ``actor`` decides whether activating is offered."""
    state = st.session_state
    st.subheader("Or adapt to your own kind of posts")
    st.caption("A correction fixes a few pairs and holds the rest in place. An adaptation learns a new kind of "
               "post (another platform, your products, much neutral talk) from dozens to thousands of labelled "
               "posts, and shows how much it learned.")
    _train(eng, version, predictor, state)
    trained = state.get("adapt_result")
    if trained:
        _results(trained, version)
        _save(eng, trained, actor, state)
    saved = state.pop("adapt_saved", None)
    if saved:
        st.success(f"Saved version {saved[0]}" + (" and made it active for everyone." if saved[1] else
                                                   " (not active: an operator activates it in Versions below)."))
