"""Explore a pair: one text and/or one image through the three heads, side by side."""
from __future__ import annotations

import hashlib

import streamlit as st

from app import charts, warmup
from app.examples import example_pairs
from app_pages.common import corrections, literal, page_start, pct
from core.heads.correction_set import CorrectionItem
from core.io.images import IMAGE_TYPES, ImageError, decode_image
from core.io.labels import LABELS, head_label

eng, version, predictor, state = page_start(
    "Explore a pair",
    "Type a text, upload a picture, or both. The model answers from the text alone, the image alone "
    "and the two together, and tells you when the text and the picture disagree.")



def inputs_fingerprint(text: str | None, image: bytes | None) -> dict[str, str | None]:
    """What a result was computed from: a hash of the text as the model reads it (surrounding spaces
    are stripped before scoring) and of the picture's bytes (None without a picture). A result whose
    fingerprint differs from the inputs on screen is stale."""
    return {"text": hashlib.sha256((text or "").strip().encode()).hexdigest(),
            "image": None if image is None else hashlib.sha256(image).hexdigest()}


# ----- a post opened from a saved run (the analysis page's gallery links here with ?run=…&row=…) -----
link = (st.query_params.get("run"), st.query_params.get("row"))
if all(link) and state.get("explore_link") != link:
    state["explore_link"] = link
    from core.io.images import read_image_bytes
    from core.runs import RunError, read_post

    try:
        post = read_post(*link)
        picture = read_image_bytes(post.image_path) if post.image_path else None
    except (RunError, ImageError, OSError) as error:
        st.error("This post of a saved run cannot be opened:")
        st.text(str(error))  # it may quote the link's own text: shown as text, never Markdown
    else:
        state["explore_text"] = post.text or ""
        if picture is None:
            state.pop("explore_example_image", None)
        else:
            state["explore_example_image"] = (post.image_name or post.image_path.name, picture)
        state["explore_upload_round"] = state.get("explore_upload_round", 0) + 1
        state.pop("explore_result", None)
        state["explore_from_run"] = (post.run_name, post.id or str(post.row), picture is None and bool(post.image_name))
if state.get("explore_from_run") and state.get("explore_link") == link:
    run_name, post_id, picture_gone = state["explore_from_run"]
    st.text(f"Post {post_id} of the run {run_name}" + (" (its picture is no longer on this server)" if picture_gone else ""))


# ----- examples -----------------------------------------------------------------------------------
examples = example_pairs()
if examples:
    with st.expander("Try an example pair (made for this project)", expanded=not state.get("explore_text")):
        names = {f"{e.id} — {e.note or e.label}": e for e in examples}
        choice = st.selectbox("Example", list(names), key="explore_example_choice",
                              help="Short texts and Pillow-drawn pictures; the two 'conflict' pairs disagree on purpose.")
        if st.button("Use this example", key="explore_use_example"):
            example = names[choice]
            state["explore_text"] = example.text
            state["explore_example_image"] = (example.image_path.name, example.image_bytes())
            # An example is a pair: its text goes with its own picture. A file uploader cannot be
            # emptied from code, so a fresh one (new key) replaces it and the upload is dropped.
            state["explore_upload_round"] = state.get("explore_upload_round", 0) + 1
            state.pop("explore_result", None)

# ----- inputs -------------------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    text = st.text_area("Text", key="explore_text", height=140, placeholder="e.g. What a gorgeous day at the beach!")
with right:
    upload = st.file_uploader("Image", type=list(IMAGE_TYPES),
                              key=f"explore_upload_{state.get('explore_upload_round', 0)}")
    image_name, image_bytes, image_source = None, None, None
    unreadable = None  # why the picture given cannot be read: the answer must not say none was given
    if upload is not None:
        # A picture uploaded after an example replaces the example's picture for good.
        state.pop("explore_example_image", None)
        image_name, image_bytes, image_source = upload.name, upload.getvalue(), "your upload"
    elif state.get("explore_example_image"):
        image_name, image_bytes = state["explore_example_image"]
        image_source = "from the example"
    if image_bytes is not None:
        try:
            st.image(decode_image(image_bytes), caption=literal(image_name), width=260)
            st.caption(f"Image in use: {literal(image_name)} ({image_source})")
        except (ImageError, OSError, ValueError) as error:
            unreadable = str(error)
            st.error(f"This image cannot be read: {literal(error)}")
            image_bytes = None
        if upload is None and st.button("Remove the example image", key="explore_clear_image"):
            state.pop("explore_example_image", None)
            st.rerun()

if st.button("Analyse", type="primary", key="explore_analyse"):
    if not (text and text.strip()) and image_bytes is None:
        st.error("Give a text, an image or both." if unreadable is None else
                 f"The image {literal(image_name)} cannot be read ({literal(unreadable)}): give a readable "
                 "image, a text or both.")
    else:
        message = ("Loading the model (first use on this server, about 10–20 s)…"
                   if warmup.first_use(predictor, text, image_bytes) else "Analysing…")
        try:
            with st.spinner(message):
                prediction = predictor.predict_pair(text, image_bytes)
        except (ImageError, OSError, ValueError) as error:
            st.error(f"Could not analyse this pair: {literal(error)}")
        else:
            warmup.mark_used(predictor, text, image_bytes)
            state["explore_result"] = {"text": text, "image": image_bytes, "image_name": image_name,
                                       "unreadable": unreadable, "prediction": prediction, "version": version,
                                       "inputs": inputs_fingerprint(text, image_bytes)}
            state.pop("explore_explanation", None)

# ----- result -------------------------------------------------------------------------------------
result = state.get("explore_result")
if result:
    p = result["prediction"]
    current = inputs_fingerprint(text, image_bytes)
    changed = [part for part in ("text", "image") if result.get("inputs", {}).get(part) != current[part]]
    stale = bool(changed)
    st.divider()
    st.subheader("Result")
    if stale:
        what = " and ".join(changed)
        st.warning(f"⚠️ This result is for the previous {what} — press **Analyse** again to analyse the "
                   f"{what} on screen now. Until then it cannot be explained or added to the correction set.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Prediction", p.label or "–", help=f"from the {head_label(p.source).lower()} head" if p.source else None)
    c2.metric("Confidence", pct(p.confidence))
    c3.metric("Time taken", f"{p.timings_ms.get('total_ms', 0):,.0f} ms")
    st.caption(f"Answer from the **{head_label(p.source)}** head · head version {result['version']}")
    if p.conflict:
        text_label = LABELS[int(p.probs["text"].argmax())]
        image_label = LABELS[int(p.probs["image"].argmax())]
        st.warning(f"⚠️ **Modality conflict:** the text reads **{text_label}** "
                   f"({pct(float(p.probs['text'].max()))}) but the image looks **{image_label}** "
                   f"({pct(float(p.probs['image'].max()))}). Treat the fused answer with care.")
    if result.get("unreadable"):
        st.warning(f"The image {literal(result['image_name'])} cannot be read ({literal(result['unreadable'])}): "
                   "only the text-only head answered, so there is no fused result.")
    elif p.missing_reason:
        st.info(p.missing_reason)
    for warning in p.warnings:
        st.warning(warning)
    st.plotly_chart(charts.probability_chart(p.probs), key="explore_chart", config=charts.export_config("probabilities"))

    # ----- explanation (core.scoring.explain, when present) -----
    with st.expander("Explain: which words and which parts of the image mattered"):
        try:
            from core.scoring.explain import explain_pair
        except ImportError:
            st.info("Explanations are not available in this installation.")
        else:
            if st.button("Explain this prediction", key="explore_explain", disabled=stale,
                         help="Analyse the text and image on screen first." if stale else None):
                with st.spinner("Measuring each word and image region…"):
                    try:
                        state["explore_explanation"] = explain_pair(predictor, result["text"], result["image"])
                    except (ImageError, OSError, ValueError, RuntimeError) as error:
                        st.error(f"Could not explain this pair: {literal(error)}")
            explanation = state.get("explore_explanation")
            if explanation is not None:
                method = explanation.method  # how it was computed: for the tooltips only
                st.caption(" ".join([f"Explained in {explanation.seconds:.1f} s.", *explanation.notes]),
                           help="How it was computed: " + "; ".join(method) + "." if method else None)
                for head in ("text", "fused"):
                    scores = explanation.token_scores.get(head)
                    if scores and explanation.tokens:
                        predicted = explanation.predicted.get(head, "?")
                        st.markdown(f"**{head_label(head)} head → {predicted}**")
                        # st.html, not st.markdown: the words are the user's, and Markdown would turn
                        # one of them into a link or a remote picture even inside a span.
                        st.html(charts.token_effect_html(explanation.tokens, scores))
                if explanation.heatmap is not None and result["image"] is not None:
                    overlay = charts.saliency_overlay(decode_image(result["image"]), explanation.heatmap)
                    head = explanation.heatmap_head or "image"
                    st.image(overlay, width=320)
                    image_method = [step for step in method if step.startswith("image")]
                    st.caption(f"**{head_label(head)} head → {explanation.predicted.get(head, '?')}.** Red areas "
                               "pushed the prediction most; blue areas mattered little.",
                               help="How it was computed: " + "; ".join(image_method) + "."
                               if image_method else None)

    # ----- add to the correction set -----
    st.divider()
    st.subheader("Wrong? Teach the model")
    if result["text"] and result["text"].strip() and result["image"] is not None:
        default = LABELS.index(p.label) if p.label in LABELS else 0
        cols = st.columns([2, 1])
        label = cols[0].selectbox("The right label for this pair", LABELS, index=default, key="explore_label",
                                  disabled=stale)
        cols[1].write("")
        if cols[1].button("Add to correction set", key="explore_add", disabled=stale,
                          help="This result is for the previous inputs: press Analyse again first." if stale
                          else None):
            # A readable id in the correction set's table (explore-1, explore-2 …) instead of a hash.
            item = CorrectionItem(result["text"], result["image"], label, result["image_name"] or "image", "explorer",
                                  id=f"explore-{len(corrections()) + 1}")
            added = corrections().add(item)
            st.success(f"{'Added' if added else 'Updated'}: the correction set now holds {len(corrections())} "
                       "pair(s). Train on them on the *Correct the model* page.")
    else:
        st.caption("Only pairs with both a text and an image can be added to the correction set.")
