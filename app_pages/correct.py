"""Correct the model: fine-tune the heads live on pairs it got wrong, check nothing broke, save a version.

A correction trains a copy of the active heads and stays in your browser tab until it is saved and
activated, so other users keep the model they had.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import streamlit as st

from app.charts import export_config
from app.correction_charts import accuracy_curves, loss_curve
from app.session import engine_key
from app.uploads import extract_images_zip, save_uploaded_files
from app_pages.adapt_section import adaptation_section
from app_pages.common import (
    access_panel,
    corrections,
    current_actor,
    literal,
    page_start,
    pct,
    reference_set,
    session_dir,
    viewer_reason,
)
from core.access import AccessDenied
from core.heads.correction import CorrectionConfig
from core.heads.correction_set import corrected_card, head_accuracies, items_from_rows, run_correction
from core.heads.training import TrainingRefused
from core.io.images import IMAGE_TYPES
from core.io.labels import head_label
from core.io.paths import UnsafePathError
from core.io.tables import TableError, prepare_pairs, read_table
from core.registry import DuplicateVersion, RegistryError
from core.runs import list_runs
from core.scoring.predict import HeadMismatch, check_card_matches, heads_from_card

log = logging.getLogger("app_pages.correct")  # a page runs as __main__: name it for the server log

eng, version, predictor, state = page_start(
    "Correct the model",
    "Collect pairs the model got wrong with their right labels, fine-tune the heads on them while "
    "replaying reference pairs, check the result, then save it as a new version. Nothing changes for "
    "anyone else until a version is activated.")
collected = corrections()
actor = current_actor()  # every change to what others are served below names this tab's actor

# ----- 1. pairs ---------------------------------------------------------------------------------
st.subheader("1. Pairs to learn from")
tab_set, tab_upload = st.tabs([f"Your correction set ({len(collected)})", "Upload labelled pairs"])
with tab_set:
    if len(collected):
        counts = collected.label_counts()
        st.caption(" · ".join(f"{label}: {n}" for label, n in counts.items()))
        st.dataframe(collected.frame(), hide_index=True)
        if st.button("Empty the correction set", key="correct_clear"):
            collected.clear()
            state.pop("correct_run", None)
            st.rerun()
    else:
        st.info("Empty. Add pairs from *Explore a pair*, send wrong rows from *Batch scoring*, or upload a "
                "labelled CSV in the next tab.")
with tab_upload:
    csv_file = st.file_uploader("Labelled CSV (columns text, image, label; id optional)", type=["csv", "txt"], key="correct_csv")
    images = st.file_uploader("Its images (files or one zip)", accept_multiple_files=True,
                              type=[*IMAGE_TYPES, "zip"], key="correct_images")
    if st.button("Add these pairs to the correction set", key="correct_add_upload", disabled=csv_file is None):
        try:
            table = read_table(csv_file.getvalue())
            target = session_dir("correct") / f"upload-{len(collected)}-{len(images or [])}"
            zips = [f for f in images or [] if f.name.lower().endswith(".zip")]
            if zips:
                root = extract_images_zip(zips[0].getvalue(), target)
            else:
                root, _ = save_uploaded_files([(f.name, f.getvalue()) for f in images or []], target)
            # The CSV's own ids when it has an id column (any case), else the row numbers.
            id_column = "id" if any(str(c).strip().lower() == "id" for c in table.columns) else None
            rows = prepare_pairs(table, label_column="label", id_column=id_column, images_root=Path(root),
                                 require_label=True)
        except (TableError, UnsafePathError, OSError) as error:
            st.error(f"These pairs cannot be used: {literal(error)}")
        else:
            items, problems = items_from_rows(rows, "upload")
            added = sum(collected.add(item) for item in items)
            # Rerun so the tab label and the table above show the pairs just added.
            state["correct_added"] = (f"Added {added} pair(s); the correction set now holds {len(collected)}.",
                                      problems)
            st.rerun()
    outcome = state.pop("correct_added", None)
    if outcome:
        message, problems = outcome
        st.success(message)
        if problems:
            with st.expander(f"{len(problems)} row(s) left out", expanded=True):
                st.markdown("\n".join(f"- {literal(p)}" for p in problems))

# ----- 2. train ---------------------------------------------------------------------------------
st.subheader("2. Train the correction")
reference = reference_set(eng)
replay, check = reference.split()
st.caption(f"Starting from the active version **{version}**. Reference set: {reference.name} — half is "
           f"replayed during training so the model keeps what it knew, the other {len(check)} pairs are held "
           "out to show whether the correction broke anything.")
with st.expander("Settings"):
    s1, s2, s3 = st.columns(3)
    epochs = s1.number_input("Max epochs", 1, 200, CorrectionConfig.epochs, key="correct_epochs",
                             help="Training stops at the first epoch where every correction pair is right.")
    lr = s2.select_slider("Learning rate", [5e-5, 1e-4, 3e-4, 1e-3, 3e-3], value=CorrectionConfig.lr, key="correct_lr")
    weight = s3.number_input("Weight of a correction pair", 1.0, 20.0, CorrectionConfig.correction_weight,
                             key="correct_weight", help="How much more a correction pair counts than a replayed one.")
settings = CorrectionConfig(lr=float(lr), epochs=int(epochs), correction_weight=float(weight))

train_clicked = st.button("Train correction", type="primary", key="correct_train", disabled=len(collected) == 0)
progress_slot = st.empty()
# One pair of chart slots: the live curves while training, then the final ones in the same place.
curve_left, curve_right = st.columns(2)
loss_slot, accuracy_slot = curve_left.empty(), curve_right.empty()


def _draw_curves(history: list[dict], key: str) -> None:
    loss_slot.plotly_chart(loss_curve(history), key=f"{key}_loss", config=export_config("training-loss"))
    accuracy_slot.plotly_chart(accuracy_curves(history), key=f"{key}_accuracy", config=export_config("accuracy"))


if train_clicked:
    progress = progress_slot.progress(0.0, text="Encoding the pairs…")
    history: list[dict] = []

    def on_epoch(row: dict) -> None:
        history.append(row)
        progress.progress(min(row["epoch"] / settings.epochs, 1.0),
                          text=f"Epoch {row['epoch']} · loss {row['train_loss']:.3f} · "
                               f"correction pairs right {pct(row['correction_accuracy'], 0)}")
        _draw_curves(history, f"correct_live_{row['epoch']}")

    try:
        run = run_correction(predictor, list(collected.items), replay, check, settings, on_epoch=on_epoch)
    except (TrainingRefused, ValueError, OSError) as error:
        progress.empty()
        loss_slot.empty()
        accuracy_slot.empty()
        st.error(f"Training refused: {literal(error)}")
    else:
        progress.progress(1.0, text=f"Done in {run.seconds:.1f} s ({len(run.history)} epochs).")
        state["correct_run"] = {"run": run, "base_version": version, "base_card": predictor.card,
                                "settings": settings, "reference": reference.name}

trained = state.get("correct_run")
if trained:
    run = trained["run"]
    if trained["base_version"] != version:
        st.warning(f"The active version changed to {version} since this correction was trained from "
                   f"{trained['base_version']}; saving keeps {trained['base_version']} as its parent.")
    _draw_curves(run.history, "correct_curves")
    n = len(run.pairs)
    ref_before, ref_after = run.reference_before.get("fused"), run.reference_after.get("fused")
    c1, c2, c3 = st.columns(3)
    c1.metric("Correction pairs right", f"{run.right_after} / {n}", delta=f"{run.right_after - run.right_before:+d} (was {run.right_before})")
    if ref_before is not None:
        c2.metric(f"Fused accuracy, {run.n_reference} reference pairs", pct(ref_after),
                  delta=f"{(ref_after - ref_before) * 100:+.1f} points (was {pct(ref_before)})")
        drop = ref_before - ref_after
        if drop > 0.01:
            st.warning(f"The correction costs {drop * 100:.1f} points of accuracy on the reference pairs. "
                       "Consider fewer epochs, a smaller weight, or more varied correction pairs before saving.")
    c3.metric("Training time", f"{run.seconds:.1f} s")
    with st.expander("Before / after on each correction pair", expanded=True):
        table = run.pairs.assign(before=lambda f: f["before"] + " (" + f["before_confidence"].map(pct) + ")",
                                 after=lambda f: f["after"] + " (" + f["after_confidence"].map(pct) + ")")
        st.dataframe(table[["id", "text", "label", "before", "after", "right_after"]]
                     .rename(columns={"right_after": "right now"}), hide_index=True)
    if run.reference_before:
        st.dataframe(pd.DataFrame([{"Branch": head_label(h), "Reference accuracy before": pct(run.reference_before[h]),
                                    "after": pct(run.reference_after[h])} for h in run.reference_before]),
                     hide_index=True)

    st.markdown("**Save this correction**")
    s1, s2 = st.columns([3, 1])
    note = s1.text_input("Note for this version", key="correct_note", placeholder="e.g. sarcastic complaints are negative")
    activate_now = s2.checkbox("Activate after saving", value=False, key="correct_activate_now",
                               disabled=not actor.is_operator,
                               help="Makes the saved version the one every user gets. Leave it off to check the "
                                    "version first and activate it below when ready." if actor.is_operator else
                                    viewer_reason(actor) + " Your saved version waits for an operator to activate it.")
    if st.button("Save as a new version", key="correct_save"):
        card = corrected_card(trained["base_card"], run, reference_name=trained["reference"],
                              base_version=trained["base_version"], config=trained["settings"])
        try:
            new_version = eng.registry.save(run.model.tensors(), card, note=note, parent=trained["base_version"])
            if activate_now and actor.is_operator:
                eng.registry.activate(new_version, actor=actor)
        except (RegistryError, AccessDenied) as error:
            st.error(f"Could not save: {literal(error)}")
        else:
            state.pop("correct_run", None)
            state["correct_saved"] = new_version, activate_now
            state["correct_version_next"] = new_version
            st.rerun()

saved = state.pop("correct_saved", None)
if saved:
    st.success(f"Saved version {saved[0]}" + (" and made it active for everyone." if saved[1] else
                                               " (not active: activate it below when ready)." if actor.is_operator
                                               else " (not active: an operator can activate it)."))

adaptation_section(eng, version, predictor, actor)

# ----- 3. versions ------------------------------------------------------------------------------
st.subheader("3. Versions")
cards = eng.registry.versions()


ON_SAME_PAIRS = f"fused accuracy, {len(check)} held-out reference pairs"
OTHER_ENCODERS = "– (other encoders)"
NOT_SCORED = "– (not scored: see the message below the table)"


@st.cache_data(show_spinner=False, max_entries=256)
def _fused_on_check(engine_key: tuple[str, str], version: str, reference_name: str, _check) -> str:
    """Every version scored on the same held-out reference pairs: figures a card recorded on other
    data (the shipped head's test split, a correction's own check) would make a regression look like
    a gain. A saved version never changes, so each is loaded and scored once per reference set.

    A version trained on other encoders (HeadMismatch) or whose files cannot be read (RegistryError:
    damaged since the list was read) says so in place of a figure; anything else raised is a fault
    of the app and goes to the caller."""
    try:
        tensors, loaded = eng.registry.load(version)
        check_card_matches(loaded, eng.text_encoder, eng.image_encoder)
    except HeadMismatch:
        return OTHER_ENCODERS
    except RegistryError as error:
        return f"– (cannot be read: {error})"
    return pct(head_accuracies(heads_from_card(tensors, loaded), _check)["fused"])


not_scored: list[tuple[str, Exception]] = []


def _fused_cell(version: str) -> str:
    try:
        return _fused_on_check(engine_key(), version, reference.name, check)
    except Exception as error:  # a fault of the app: logged and shown below, the versions stay usable
        log.exception("scoring head version %s on the reference pairs failed", version)
        not_scored.append((version, error))
        return NOT_SCORED


def _last_activated(events: list[dict]) -> dict[str, str]:
    """version -> when and by whom it was last made active (activated or rolled back to)."""
    out = {}
    for event in events:
        if event.get("action") in ("activated", "rolled back to") and event.get("version"):
            out[event["version"]] = (f"{str(event.get('at', ''))[:16].replace('T', ' ')} UTC by {event.get('by', '?')}"
                                     + (" (rollback)" if event["action"] == "rolled back to" else ""))
    return out


activated = _last_activated(eng.registry.events())
damaged = {c["version"]: c["damaged"] for c in cards if c.get("damaged")}
st.dataframe(pd.DataFrame([{
    "active": c["version"] == version, "version": c["version"],
    "created": (c.get("created_at") or "")[:19].replace("T", " ") or ("shipped" if c.get("builtin") else ""),
    "note": c.get("note") or "", "parent": c.get("parent") or "",
    "last activated": activated.get(c["version"], ""),
    ON_SAME_PAIRS: f"damaged: {c['damaged']}" if c.get("damaged") else _fused_cell(c["version"]),
} for c in cards]), hide_index=True,
             column_config={"active": st.column_config.CheckboxColumn("active", width="small")})
st.caption(f"Each version is scored on the same {len(check)} held-out pairs of {reference.name}, so the "
           "figures compare.")
for failed, error in not_scored:
    st.error(f"Version {failed} could not be scored on the reference pairs: the app failed, not the version "
             "(the details are in the server log). It can still be activated, downloaded or deleted.")
    st.exception(error)


def _can_roll_back() -> bool:
    """Whether the registry remembers an earlier active version (what Roll back would re-activate)."""
    try:
        return bool(eng.registry.can_roll_back())
    except RegistryError:
        return False


ids = [c["version"] for c in cards]
if "correct_version_next" in state:
    state["correct_version"] = state.pop("correct_version_next")
if state.get("correct_version") not in ids:
    state["correct_version"] = version if version in ids else ids[0]
v1, v2 = st.columns([2, 3], vertical_alignment="bottom")
chosen = v1.selectbox("Version", ids, key="correct_version",
                      format_func=lambda v: f"{v} (damaged)" if v in damaged else v)
chosen_builtin = any(c["version"] == chosen and c.get("builtin") for c in cards)
if chosen in damaged:
    st.warning(f"Version {chosen} is damaged and cannot be activated or downloaded: {literal(damaged[chosen])}")
saved_runs = list_runs()
if saved_runs and chosen not in damaged:  # the evidence before activating: both versions on the user's own posts
    st.page_link("app_pages/analyse.py", label=f"Compare {chosen} with the version that scored your latest run, on its posts",
                 icon=":material/compare_arrows:", query_params={"run": saved_runs[0].id, "compare": chosen})
with v2:
    b1, b2, b3, b4 = st.columns(4)
    if chosen in damaged:
        activate_help = "This version is damaged: its files do not match its card."
    elif chosen == version:
        activate_help = "This version is the one being served."
    else:
        activate_help = "Makes this version the one every user gets." if actor.is_operator else viewer_reason(actor)
    if b1.button("Activate", key="correct_activate", help=activate_help,
                 disabled=chosen == version or chosen in damaged or not actor.is_operator):
        try:
            eng.registry.activate(chosen, actor=actor)
            state["correct_version_next"] = chosen
            state["correct_notice"] = f"Version {chosen} is now active for everyone."
            st.rerun()
        except (RegistryError, AccessDenied) as error:
            st.error(f"Could not activate: {literal(error)}")
    can_roll_back = _can_roll_back()
    if not actor.is_operator:
        rollback_help = viewer_reason(actor)
    elif can_roll_back:
        rollback_help = "Re-activate the version that was active before this one."
    else:
        rollback_help = "Nothing to roll back to: no earlier active version (only this one has ever been active)."
    if b2.button("Roll back", key="correct_rollback", disabled=not (can_roll_back and actor.is_operator),
                 help=rollback_help):
        try:
            back = eng.registry.rollback(actor=actor)
            state["correct_version_next"] = back  # the selectbox exists already: set it on the rerun
            state["correct_notice"] = f"Rolled back: version {back} is active again."
            st.rerun()
        except (RegistryError, AccessDenied) as error:
            st.error(f"Could not roll back: {literal(error)}")
    if chosen not in damaged:
        try:
            b3.download_button("Download", eng.registry.export_zip(chosen), file_name=f"head-{chosen}.zip",
                               mime="application/zip", key="correct_download",
                               help="weights.safetensors + card.json; upload it on another machine with the same encoders.")
        except RegistryError as error:
            st.error(f"Cannot export {chosen}: {literal(error)}")
    if not actor.is_operator:
        delete_help = viewer_reason(actor)
    elif chosen_builtin:
        delete_help = "The shipped default stays: it is what every user falls back to."
    elif chosen == version:
        delete_help = "This version is being served: activate or roll back to another one first."
    else:
        delete_help = "Removes this saved version for everyone; it cannot be undone (download it first to keep a copy)."
    if b4.button("Delete", key="correct_delete", help=delete_help,
                 disabled=not actor.is_operator or chosen_builtin or chosen == version):
        try:
            eng.registry.delete(chosen, actor=actor)
            state["correct_notice"] = f"Version {chosen} was deleted."
            state["correct_version_next"] = version
            st.rerun()
        except (RegistryError, AccessDenied) as error:
            st.error(f"Could not delete: {literal(error)}")
notice = state.pop("correct_notice", None)
if notice:
    st.success(notice)

with st.expander("Upload a version (a zip downloaded from this app)"):
    if not actor.is_operator:
        st.caption(viewer_reason(actor))
    upload = st.file_uploader("Version zip", type=["zip"], key="correct_import", disabled=not actor.is_operator)
    if st.button("Import", key="correct_import_button", disabled=upload is None or not actor.is_operator,
                 help=None if actor.is_operator else viewer_reason(actor)):
        try:
            imported = eng.registry.import_zip(upload.getvalue(), expected=eng.expected(), actor=actor)
        except AccessDenied as error:
            st.error(f"Not imported: {literal(error)}")
        except DuplicateVersion as duplicate:
            st.error(f"Not imported: version {duplicate.existing} is already here with the same weights and card. "
                     "Select it in the list above to activate it.")
        except RegistryError as error:
            st.error(f"This version cannot be used here: {literal(error)}")
        else:
            st.success(f"Imported as version {imported}. Activate it above when ready.")

with st.expander("Who may change the model", expanded=not actor.is_operator):
    access_panel("correct_access")
