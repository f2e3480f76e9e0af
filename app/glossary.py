"""The words the dashboard uses, explained once for every page (plain text, no Streamlit here)."""
from __future__ import annotations

GLOSSARY = {
    "Text only / Image only": "What the model says from the text alone and from the picture alone: two "
                              "separate small models over the same encoders.",
    "Fused": "What the model says from both together: the text and image features side by side, read by "
             "a third small model. This is the main answer.",
    "Confidence": "The probability the model gives its answer (the largest of the three). Calibrated: "
                  "over many pairs, answers given with 80 % confidence are right about 80 % of the time.",
    "Calibration": "Each model's raw scores are divided by a temperature fitted on held-out data, so its "
                   "probabilities match how often it is right. The reliability diagram shows how well "
                   "that holds on your labelled pairs.",
    "Modality conflict": "The text model and the image model confidently (each ≥ 50 %) give opposite "
                         "answers, one negative and one positive. The fused answer is less reliable there.",
    "Accuracy": "The share of labelled pairs the model gets right. With few pairs it is rough: the 95 % "
                "interval shows how far it could move on another sample of the same size.",
    "Weighted F1": "F1 (the balance of precision and recall) for each class, averaged with each class "
                   "weighted by how many pairs it has. Macro F1 weighs the three classes equally, so a "
                   "rare class such as neutral counts as much as the others.",
}


def glossary_markdown() -> str:
    """The glossary as a Markdown list."""
    return "\n".join(f"- **{term}** — {meaning}" for term, meaning in GLOSSARY.items())
