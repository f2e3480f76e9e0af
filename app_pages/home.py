"""Home: what the tool does and which model is serving."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.session import device_description, headline_metrics, resplit_summary
from app_pages.common import access_panel, active_predictor, corrections, engine, literal, pct
from core.io.labels import HEAD_NAMES, head_label
from core.machine import describe_machine

st.title("Multimodal sentiment dashboard")
st.markdown(
    "Social posts and product reviews come as **a short text and a picture**. This tool reads both and "
    "says whether the pair is **negative, neutral or positive** — from the text alone, from the image "
    "alone, and from both together — and warns when the text and the picture disagree."
)

c1, c2, c3 = st.columns(3)
with c1:
    st.page_link("app_pages/explore.py", label="Explore a pair", icon=":material/search:")
    st.caption("One text and/or image: three sets of probabilities, the conflict check, an explanation.")
with c2:
    st.page_link("app_pages/batch.py", label="Batch scoring", icon=":material/table:")
    st.caption("A CSV and its images: scores, charts, accuracy when labels exist, a safe CSV download.")
with c3:
    st.page_link("app_pages/correct.py", label="Correct the model", icon=":material/tune:")
    st.caption("Teach the model the pairs it got wrong, check nothing broke, save and activate a version.")

st.divider()
eng = engine()
version, predictor = active_predictor(eng)
card = predictor.card

st.subheader("The model serving now")
# Encoder specs and the device are long words: two per row, in a smaller type than a metric's
# default, so they read in full instead of ending in an ellipsis.
st.html("<style>.st-key-home_model [data-testid='stMetricValue'] { font-size: 1.6rem; }</style>")
with st.container(key="home_model"):
    m1, m2 = st.columns(2)
    m1.metric("Head version", version)
    m2.metric("Device", device_description())
    m3, m4 = st.columns(2)
    m3.metric("Text encoder", card.text_encoder.spec)
    m4.metric("Image encoder", card.image_encoder.spec)
st.caption(
    f"Heads over {card.text_encoder.dim}-d text and {card.image_encoder.dim}-d image features. "
    + (f"Note: {literal(card.note)}. " if card.note else "")
    + ("This is the shipped default." if card.builtin else f"Derived from version {literal(card.parent or '—')}.")
)

for notice in (eng.text_encoder.notice, eng.image_encoder.notice, getattr(predictor, "notice", None)):
    if notice:
        st.warning(notice, icon=":material/warning:")
check = getattr(eng.image_encoder, "check", None)
if check is not None and check.passed:
    st.caption(f"The int8 image graph was checked on this CPU: cosine to the fp32 network median "
               f"{check.median_cosine:.3f} (min {check.min_cosine:.3f}) on {check.n_pictures} reference photos.")

metrics = headline_metrics(card)
if metrics:
    split = next(iter(metrics))
    block = metrics[split]
    where = {"test": "held-out test set", "dev": "development set",
             "reference": ((card.metrics or {}).get("reference", {}).get("name") or "reference set")}[split]
    st.markdown(f"**Scores on the {where}** ({block.get('n') or '?'} pairs)")
    table = pd.DataFrame([
        {"Branch": head_label(h), "Accuracy": pct(block[h].get("accuracy")),
         "Weighted F1": pct(block[h].get("weighted_f1")) if block[h].get("weighted_f1") is not None else "–"}
        for h in HEAD_NAMES if h in block
    ])
    resplit = resplit_summary(card) if split == "test" else None
    if resplit:
        # One split's figure says little on its own: the same recipe on random re-splits sits beside it.
        for column in ("accuracy", "weighted_f1"):
            name = "Accuracy" if column == "accuracy" else "Weighted F1"
            table[f"{name}, {resplit['k']} re-splits"] = [
                f"{100 * resplit['heads'][h][column]['mean']:.1f} ± {100 * resplit['heads'][h][column]['sd']:.1f}%"
                for h in HEAD_NAMES if h in block]
    st.dataframe(table, hide_index=True, width="content")
    if split != "reference" and card.machine is not None:
        measured = str(card.machine.get("measured_at") or "")[:10]
        st.caption(f"Measured on {describe_machine(card.machine)}" + (f", {measured}" if measured else ""))
    if resplit:
        st.caption(f"Re-splits: the same recipe retrained on {resplit['k']} random splits of the "
                   f"{resplit['pool']} pairs ({resplit['how']}), mean ± sd of each split's test score; measured on "
                   f"{describe_machine(resplit['machine'])}, {resplit['measured_at'][:10]}.")
else:
    st.info("This head version records no test metrics.")

st.subheader("Who may change the model")
access_panel("home_access")

n_versions = len(eng.registry.versions())
n_corrections = len(corrections())
st.caption(f"{n_versions} head version{'s' if n_versions != 1 else ''} available · "
           f"your correction set holds {n_corrections} pair{'s' if n_corrections != 1 else ''} · "
           "the model is loaded once per server process and shared by every browser tab.")
