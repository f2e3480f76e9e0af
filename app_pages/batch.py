"""Batch scoring: a CSV of pairs plus their images, scored with a progress bar; charts, metrics, download."""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from app import charts
from app.analysis_views import save_batch_run
from app.batch_report import (
    LINE,
    MAX_THUMBNAILS,
    branch_confidences,
    branch_predictions,
    csv_lines,
    download_frame,
    filter_rows,
    html_report,
    metrics_table,
    reliability_by_head,
    results_view,
    scored,
    thumbnail_uri,
    worth_labelling,
    wrong_rows,
)
from app.batch_runs import SavedRun, run_key, upload_signature
from app.cluster_batch import cluster_address, score_on_cluster
from app.uploads import count_images, extract_images_zip, save_uploaded_files, server_folder
from app_pages.common import (
    corrections,
    current_actor,
    duration,
    glossary,
    literal,
    page_start,
    pct,
    session_dir,
    viewer_reason,
)
from core import config
from core.heads.correction_set import items_from_rows
from core.io.images import IMAGE_TYPES
from core.io.labels import LABELS, head_label
from core.io.paths import UnsafePathError
from core.io.tables import TableError, prepare_pairs, read_table, to_safe_csv_bytes
from core.scoring.batch import PROBABILITY_COLUMNS, BatchResult, labelled_metrics, score_rows

NONE = "(none)"
# Below this many labelled pairs a 95 % interval on accuracy spans more than ±6 points and the
# reliability diagram's ten bins hold a few pairs each: the page says so.
SMALL_SAMPLE = 200
SOURCES = ["Upload a folder", "Upload image files", "Upload a zip", "A folder on the server", "No images"]

eng, version, predictor, state = page_start(
    "Batch scoring",
    "Score a whole table of text + image pairs. Bad rows are listed with their reason; the good "
    "rows are scored anyway. With a label column you also get accuracy, F1 and confusion matrices.")

# ----- 1. the table -------------------------------------------------------------------------------
st.subheader("1. Your table")
csv_file = st.file_uploader("CSV file with one pair per row", type=["csv", "txt"], key="batch_csv",
                            help="Columns for the text, the image file name and (optionally) the label.")
table = None
if csv_file is None:
    st.info("Upload a CSV to begin. Example header: `id,text,image,label` — `image` is a file name "
            "relative to the image folder you choose below.")
else:
    try:
        table = read_table(csv_file.getvalue())
    except TableError as error:
        st.error(f"This CSV cannot be used: {literal(error)}")
    else:
        st.caption(f"{len(table):,} rows · columns: {', '.join(literal(c) for c in table.columns)} · read as "
                   f"{table.attrs.get('encoding', '?')}")
        st.dataframe(table.head(5), hide_index=True)

# ----- 2. the images ------------------------------------------------------------------------------
st.subheader("2. The images")
source = st.radio("Where are the images?", SOURCES, horizontal=True, key="batch_image_source")
images_root = None


def _from_uploads(files, kind: str):
    """Write the uploaded files once per distinct upload (reruns reuse the folder)."""
    signature = upload_signature(kind, files)  # names and content: other pictures of the same size count
    # Written again when the folder is gone too (a temp cleaner, a full disk wiped it): never score
    # against a folder that no longer holds the pictures.
    if state.get("batch_images_sig") != signature or not Path(state.get("batch_images_root", "")).is_dir():
        target = session_dir("batch") / f"upload-{len(state.get('batch_images_history', []))}"
        state.setdefault("batch_images_history", []).append(str(target))
        if kind == "zip":
            root, skipped = extract_images_zip(files[0].getvalue(), target), []
        else:
            root, skipped = save_uploaded_files([(f.name, f.getvalue()) for f in files], target)
        state["batch_images_sig"], state["batch_images_root"], state["batch_images_skipped"] = signature, str(root), skipped
    for note in state.get("batch_images_skipped", []):
        st.warning(f"Skipped an uploaded file: {literal(note)}")
    return state["batch_images_root"]


try:
    if source == "Upload a folder":
        files = st.file_uploader("Image folder", accept_multiple_files="directory", type=list(IMAGE_TYPES),
                                 key="batch_images_dir")
        images_root = _from_uploads(files, "files") if files else None
    elif source == "Upload image files":
        files = st.file_uploader("Image files", accept_multiple_files=True, type=list(IMAGE_TYPES), key="batch_images_files")
        images_root = _from_uploads(files, "files") if files else None
    elif source == "Upload a zip":
        archive = st.file_uploader("Zip of the images", type=["zip"], key="batch_images_zip")
        images_root = _from_uploads([archive], "zip") if archive else None
    elif source == "A folder on the server":
        root, actor = config.data_root(), current_actor()
        if not actor.is_operator:
            st.info(viewer_reason(actor))
        folder = st.text_input(f"Folder under {root}", key="batch_images_server", disabled=not actor.is_operator,
                               help="Only folders inside the configured data root (MMSA_DATA_ROOT) can be read.")
        images_root = str(server_folder(folder, root, actor)) if folder.strip() else None
except (UnsafePathError, NotADirectoryError, OSError) as error:
    st.error(f"These images cannot be used: {literal(error)}")
    images_root = None
if images_root:
    st.caption(f"{count_images(images_root):,} image files found.")
elif source != "No images":
    st.caption("No images yet.")
if table is None:
    st.stop()
table_signature = hashlib.sha256(csv_file.getvalue()).hexdigest()

# ----- 3. columns ---------------------------------------------------------------------------------
st.subheader("3. Columns")
columns = list(table.columns)


def _guess(*names: str) -> int:
    for i, column in enumerate(columns):
        if column.strip().lower() in names:
            return i + 1
    return 0


COLUMN_BOXES = ("batch_text_col", "batch_image_col", "batch_label_col", "batch_id_col")
if state.get("batch_columns_for") != table_signature:
    # Another table: a box keeps its value while that value is still an option ("(none)" always is),
    # so the guesses for this table are made only once the old choices are dropped.
    for key in COLUMN_BOXES:
        state.pop(key, None)
    state["batch_columns_for"] = table_signature
c1, c2, c3, c4 = st.columns(4)
text_col = c1.selectbox("Text", [NONE, *columns], index=_guess("text", "tweet", "caption", "review"), key="batch_text_col")
image_col = c2.selectbox("Image file", [NONE, *columns], index=_guess("image", "image_path", "file", "img"),
                         key="batch_image_col")
label_col = c3.selectbox("Label (optional)", [NONE, *columns], index=_guess("label", "sentiment"), key="batch_label_col")
id_col = c4.selectbox("ID (optional)", [NONE, *columns], index=_guess("id"), key="batch_id_col")


def pick(value: str) -> str | None:
    return None if value == NONE else value


on_cluster = bool(cluster_address()) and st.checkbox(
    f"Run on the Ray cluster ({cluster_address()})", key="batch_on_cluster",
    help="Every worker of the cluster must read the images at the same path as this server (a shared folder).")
columns_chosen = {"text": pick(text_col), "image": pick(image_col), "label": pick(label_col), "id": pick(id_col)}
images_chosen = state.get("batch_images_sig") if source.startswith("Upload") else images_root
saved = SavedRun(run_key(table_signature, images_chosen, columns_chosen, version), len(table))


def _prepare_rows():
    """The table's rows for the chosen columns and images, or None after saying what is wrong."""
    if columns_chosen["text"] is None and columns_chosen["image"] is None:
        st.error("Choose a text column, an image column or both.")
    elif columns_chosen["image"] is not None and images_root is None and source != "No images":
        # Scoring now would only list every row as bad: say what is missing instead.
        st.error("No images were given: choose the image folder, files or zip in step 2 (or pick "
                 "'No images' to score the text alone).")
    else:
        try:
            return prepare_pairs(table, text_column=columns_chosen["text"], image_column=columns_chosen["image"],
                                 label_column=columns_chosen["label"], id_column=columns_chosen["id"],
                                 images_root=None if images_root is None else Path(images_root))
        except TableError as error:
            st.error(f"The column choice does not fit this table: {literal(error)}")
    return None


def _score(rows, start: int = 0, previous=None, seconds_before: float = 0.0) -> None:
    """Score from ``start`` with a progress bar and a Stop button; every finished chunk is saved, so Stop,
    a closed tab or a server restart keeps it."""
    if start == 0:
        state.pop("batch", None)  # the results on screen would belong to the run being replaced
    bar = st.progress(start / max(len(rows), 1), text=f"Scoring {len(rows) - start:,} rows…")
    st.button("Stop scoring", key="batch_stop",
              help="The rows scored so far are kept (even across a server restart); resume whenever you like.")
    started = time.perf_counter()

    def on_progress(p):
        bar.progress(p.done / max(p.total, 1),
                     text=f"{p.done:,} / {p.total:,} rows · {p.errors:,} bad · "
                          + ("estimating the time left…" if p.eta_s is None else f"about {duration(p.eta_s)} left"))

    if on_cluster and start == 0:
        result = score_on_cluster(
            csv_file.getvalue(), predictor, images_root=images_root, work_dir=session_dir("cluster"),
            columns={f"{kind}_column": column for kind, column in columns_chosen.items()}, on_progress=on_progress)
    else:
        result = score_rows(rows, predictor, start=start, previous=previous, on_progress=on_progress,
                            on_chunk=saved.append)
    seconds = seconds_before + time.perf_counter() - started
    bar.progress(result.completed / max(result.total, 1),
                 text=f"Done: {result.completed:,} / {result.total:,} rows in {duration(seconds)}")
    state["batch"] = {"result": result, "rows": rows, "version": version, "name": csv_file.name,
                      "seconds": seconds, "table": table, "signature": table_signature, "run": saved.folder.name}


if st.button("Score the table", type="primary", key="batch_score"):
    rows = _prepare_rows()
    if rows is not None:
        saved.discard()  # a fresh start: nothing saved before counts
        _score(rows)

# ----- results ------------------------------------------------------------------------------------
batch = state.get("batch")
if saved.exists and (not batch or batch.get("run") != saved.folder.name
                     or saved.completed > batch["result"].completed):
    # This job was (partly) scored before: by this tab before Stop, or before the server restarted.
    rows = _prepare_rows()
    if rows is not None:
        previous = saved.frame()
        done = len(previous)
        batch = state["batch"] = {
            "result": BatchResult(previous, done, len(rows), None if done >= len(rows) else
                                  f"{done:,} of {len(rows):,} rows done and saved"),
            "rows": rows, "version": version, "name": csv_file.name, "seconds": None, "table": table,
            "signature": table_signature, "run": saved.folder.name}
if not batch:
    st.stop()
if batch.get("signature") != table_signature:
    # Results are shown only under the table they came from.
    st.info(f"The results of {literal(batch['name'])} are put away: this is another table. Score this table to see "
            "its results.")
    st.stop()
result = batch["result"]
frame = result.frame
st.divider()
st.subheader("Results")
if result.failure:
    st.error(f"Scoring stopped early ({literal(result.failure)}). The {result.completed:,} rows scored so far are shown.")
    if st.button(f"Resume from row {result.completed + 1:,}", key="batch_resume",
                 help="Rows already scored are kept and not scored again."):
        _score(batch["rows"], start=result.completed, previous=result.frame, seconds_before=batch["seconds"] or 0.0)
        st.rerun()
bad = frame[frame["status"] == "error"]
good = scored(frame)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Rows scored", f"{len(good):,}")
m2.metric("Bad rows", f"{len(bad):,}")
m3.metric("Modality conflicts", f"{int(frame['conflict'].sum()):,}")
m4.metric("Time", duration(batch["seconds"]) if batch["seconds"] is not None else "—")
st.caption(f"{literal(batch['name'])} · head version {batch['version']}")
if result.finished:  # kept as a run to analyse: by any column, over time, the pictures
    run_id, problem = save_batch_run(batch, predictor.card, copy_pictures=source.startswith("Upload"))
    if run_id:
        st.page_link("app_pages/analyse.py", label="Analyse this run: by any column, over time, the pictures",
                     icon=":material/insights:", query_params={"run": run_id})
    else:
        st.warning("This scoring could not be saved as a run to analyse later; the results below are not affected.")
        st.text(problem)

if len(bad):
    with st.expander(f"{len(bad):,} bad row{'s' if len(bad) != 1 else ''} were not scored — see why", expanded=True):
        listing = pd.DataFrame({LINE: csv_lines(bad), "id": bad["id"], "reason": bad["message"]})
        st.dataframe(listing, hide_index=True)

figures = {}  # every chart of the run, for the HTML report
if len(good):
    c1, c2 = st.columns(2)
    figures["Predicted classes"] = charts.class_distribution_chart(branch_predictions(good))
    figures["Confidence"] = charts.confidence_histogram(branch_confidences(good))
    c1.plotly_chart(figures["Predicted classes"], key="batch_distribution",
                    config=charts.export_config("predicted-classes"))
    c2.plotly_chart(figures["Confidence"], key="batch_confidence", config=charts.export_config("confidence"))

metrics = labelled_metrics(good) if len(good) else None
summary = None
if metrics:
    st.subheader("Against your labels")
    summary = metrics_table(metrics)
    st.dataframe(summary, hide_index=True)
    n_labelled = max(m["n"] for m in metrics.values())
    if n_labelled < SMALL_SAMPLE:
        low, high = metrics[next(iter(metrics))]["accuracy_ci95"]
        st.warning(f"Only {n_labelled} labelled pairs: on another sample of this size the accuracy could land "
                   f"anywhere in its 95 % interval (here {pct(low)} – {pct(high)}). Treat these figures as rough.")
    tabs = st.tabs([head_label(h) for h in metrics])
    for tab, (head, m) in zip(tabs, metrics.items()):
        with tab:
            left, right = st.columns(2)
            report = pd.DataFrame([{"class": c, "precision": pct(v["precision"]), "recall": pct(v["recall"]),
                                    "F1": pct(v["f1"]), "support": v["support"]} for c, v in m["per_class"].items()])
            left.dataframe(report, hide_index=True)
            title = f"Confusion matrix — {head_label(head)}"
            figures[title] = charts.confusion_matrix_chart(m["confusion_matrix"], title)
            right.plotly_chart(figures[title], key=f"batch_confusion_{head}",
                               config=charts.export_config(f"confusion-{head}"))
    figures["Reliability"] = charts.reliability_diagram(reliability_by_head(good))
    st.plotly_chart(figures["Reliability"], key="batch_reliability", config=charts.export_config("reliability"))
    st.caption("Reliability: when the model says 80 % sure, is it right 80 % of the time? Points on the "
               "dashed line mean yes."
               + (f" With {n_labelled} pairs spread over 10 bins, most bins hold a handful of pairs: read the "
                  "diagram as noise, not as a verdict." if n_labelled < SMALL_SAMPLE else ""))
    glossary()
if figures:
    report = html_report(f"{batch['name']} — head version {batch['version']}", figures, summary,
                         {"Rows scored": len(good), "Bad rows": len(bad), "Modality conflicts": int(frame["conflict"].sum())})
    st.download_button("Download the charts and metrics (HTML report)", report.encode(),
                       file_name=f"report-{batch['name'].rsplit('.', 1)[0]}.html", mime="text/html",
                       key="batch_report", help="One self-contained page: works offline, charts stay interactive.")
    st.caption("One chart as a picture: the camera button at its top right (on hover) saves it as a PNG.")

st.subheader("Scored rows")
f1, f2, f3 = st.columns([2, 2, 1])
classes = f1.multiselect("Predicted class", LABELS, default=LABELS, key="batch_filter_classes")
low, high = f2.slider("Confidence (%)", 0, 100, (0, 100), step=5, key="batch_filter_confidence")
only_conflicts = f3.checkbox("Show only modality conflicts", key="batch_only_conflicts")
has_labels = "label" in frame and frame["label"].notna().any()
only_wrong = f3.checkbox("Only wrong predictions", key="batch_only_wrong", disabled=not has_labels,
                         help=None if has_labels else "Needs a label column.")
chosen = filter_rows(frame, classes=classes, wrong_only=only_wrong and has_labels,
                     confidence=(low / 100, high / 100), conflicts_only=only_conflicts)
st.caption(f"Showing {len(chosen):,} of {len(frame):,} rows.")
shown = results_view(chosen)
# Shown in percent with one decimal everywhere (19.6 % beside 0.1 %); the download keeps fractions.
percent = {c: st.column_config.NumberColumn(c.removeprefix("p_").replace("_", " "), format="%.1f %%")
           for c in PROBABILITY_COLUMNS + ["confidence"]}
view = shown.assign(**{c: shown[c] * 100 for c in percent})
if 0 < len(shown) <= MAX_THUMBNAILS:
    # Thumbnails are made once per row and kept with the run, so filtering and reruns cost nothing.
    thumbnails = batch.setdefault("thumbnails", {})
    by_row = {row.row: row for row in batch["rows"]}
    for r in chosen["row"]:
        if r not in thumbnails:
            path = by_row[r].image_path
            thumbnails[r] = thumbnail_uri(path) if path is not None and by_row[r].ok else None
    view.insert(1, "picture", [thumbnails[r] for r in chosen["row"]])
    percent["picture"] = st.column_config.ImageColumn("picture", width="small")
st.dataframe(view, hide_index=True, column_config=percent)
stem = batch["name"].rsplit(".", 1)[0]
d1, d2 = st.columns(2)
with d1:
    st.download_button("Download the scored CSV", to_safe_csv_bytes(download_frame(frame, batch["table"])),
                       file_name=f"scored-{stem}.csv", mime="text/csv", key="batch_download",
                       help="Every row. Cells that a spreadsheet would run as a formula are neutralised with a "
                            "leading quote.")
if len(chosen) < len(frame):
    with d2:
        st.download_button(f"Download the {len(chosen):,} rows shown",
                           to_safe_csv_bytes(download_frame(chosen, batch["table"])),
                           file_name=f"scored-{stem}-filtered.csv", mime="text/csv", key="batch_download_shown")

wrong = wrong_rows(frame)
if len(wrong):
    st.subheader("Teach the model")
    pairs = f"{len(wrong):,} labelled pair" + ("s were" if len(wrong) != 1 else " was")
    st.caption(f"{pairs} predicted wrongly.")
    if st.button(f"Send the wrongly predicted pair{'s' if len(wrong) != 1 else ''} ({len(wrong):,}) to the correction set",
                 key="batch_send_wrong"):
        by_row = {row.row: row for row in batch["rows"]}
        items, problems = items_from_rows([by_row[r] for r in wrong["row"]], "batch")
        added = sum(corrections().add(item) for item in items)
        st.success(f"Added {added} pair(s); the correction set now holds {len(corrections())}. "
                   "Train on them on the *Correct the model* page.")
        for problem in problems:
            st.warning(literal(problem))
elif metrics:
    st.caption("Every labelled pair was predicted correctly: nothing to send to the correction set.")

candidates = worth_labelling(frame, len(frame))
if len(candidates):
    st.subheader("Label where it pays")
    st.caption("The unlabelled pairs the model is least sure of, and those whose text and picture disagree, "
               "come first: labelling these teaches a correction more than labelling pairs at random "
               "(measured on MVSA: docs/model-card.md, 'Label where it pays').")
    n_show = st.slider("How many to label", 1, min(50, len(candidates)), min(10, len(candidates)), key="batch_al_n")
    by_row = {row.row: row for row in batch["rows"]}
    picked = {}
    for _, pair in candidates.head(n_show).iterrows():
        c_text, c_answer, c_label = st.columns([5, 2, 2])
        c_text.caption(f"line {pair['row'] + 2} · {literal(pair['image'])}")
        c_text.text(pair["text"][:160])
        c_answer.caption(f"model: {pair['prediction']} ({pct(pair['confidence'])})")
        label = c_label.selectbox("Your label", ["(skip)", *LABELS], key=f"batch_al_{pair['row']}",
                                  label_visibility="collapsed")
        if label != "(skip)":
            picked[int(pair["row"])] = label
    if st.button(f"Send the {len(picked)} labelled pair{'s' if len(picked) != 1 else ''} to the correction set",
                 key="batch_al_send", disabled=not picked):
        items, problems = items_from_rows([replace(by_row[r], label=label) for r, label in picked.items()], "batch")
        added = sum(corrections().add(item) for item in items)
        st.success(f"Added {added} pair(s); the correction set now holds {len(corrections())}. "
                   "Train on them on the *Correct the model* page.")
        for problem in problems:
            st.warning(literal(problem))
st.caption(f"Labels: {', '.join(LABELS)}.")
