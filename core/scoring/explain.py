"""Why the heads decided, and which parts of the pair they looked at.

Two explanations per pair, both computed by calling the encoders directly (occluded variants never
go through the feature store, which would fill it with texts and pictures nobody uploaded):

- Words: leave-one-word-out occlusion. The text minus word i is encoded (all variants in one
  batched ``encode`` call) and run through the text head and, with the image's features held fixed,
  the fusion head. A word's score is how much the head's calibrated probability of its predicted
  class drops when the word is left out: positive = the word supports the prediction, negative = it
  pushes away from it. Faithful by construction (it *is* the model's behaviour without the word),
  it needs no gradients through the tokenizer's sub-words and it costs one batched forward pass.
  Past ``MAX_TEXT_OCCLUSIONS`` words, groups of neighbouring words are left out instead, so a long
  review costs a bounded number of variants (the notes say so).
- Image: Grad-CAM for the bundled EfficientNet-Lite0. Its pooled feature is the mean of the last
  conv map, so the head's gradient with respect to that map is all Grad-CAM needs: one forward pass
  of the CNN, one backward pass through the small head only. The 7×7 map covers the centre square
  the encoder sees (``resize_and_center_crop``) and is placed back into the full picture; the cut
  edges get 0 (the model never saw them). Any other encoder (a Hugging Face ViT, ...) falls back to
  occlusion in image space: grey out each cell of a grid on the picture, re-run the encoder's own
  preprocessing and measure the drop in the head's log-odds for its class, so the map lines up
  with the picture whatever resize or crop that processor does.

Both use the same sign convention as ``app.charts.token_effect_html`` and
``app.charts.saliency_overlay``: more = towards the predicted class.

An Explanation keeps two kinds of remarks apart: ``notes`` say in plain words what limits the
picture a user sees (words the model did not read, the picture's cut-off edges), ``method`` says how
it was computed, for those who want the technical detail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from core.encoders import EfficientNetLite0Encoder, EfficientNetLite0Int8Encoder, center_crop_box
from core.errors import InputError
from core.heads.calibration import apply_temperature
from core.io.labels import LABELS

TOKEN_SCORE_LEGEND = (
    "Each word's score is how much the model's confidence in its answer drops when that word is left out: "
    "+ means the word pushes towards the predicted sentiment, − means it pushes away from it, "
    "near 0 means the answer barely depends on it."
)
HEATMAP_LEGEND = (
    "Warm (red/yellow) areas pushed the prediction towards its sentiment the most; cool (blue) areas had "
    "little or the opposite effect. Brightness is relative to the strongest area of this picture."
)

MAX_TEXT_OCCLUSIONS = 40   # longer texts are scored in up to this many groups of neighbouring words
OCCLUSION_GRID = 6          # cells along the picture's short side for the occlusion fallback
OCCLUSION_MAX_CELLS = 12    # cap along the long side (panoramas)


@dataclass
class Explanation:
    """Why a pair got its labels: per-token scores per head, the predicted labels and their confidence, an image
    saliency map, notes."""
    tokens: list[str]                       # words of the text as shown to the user (whitespace split)
    token_scores: dict[str, list[float]]    # "text" and, with an image, "fused": one score per token
    predicted: dict[str, str]               # head → predicted label for the heads present
    heatmap: np.ndarray | None              # (H, W) float in 0..1 at the decoded image's size; None without image
    heatmap_head: str | None                # which head the saliency explains ("image" or "fused")
    seconds: float
    confidence: dict[str, float] = field(default_factory=dict)   # head → calibrated probability of its label
    notes: list[str] = field(default_factory=list)               # plain words: words not read, cut-off edges, ...
    method: list[str] = field(default_factory=list)              # technical: how the scores and the map were computed


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _probabilities(predictor, head: str, text: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(n, 3) calibrated probabilities of one head."""
    return apply_temperature(predictor.logits(text, image)[head], predictor.temperatures[head])


def _words_read(text_encoder, words: list[str]) -> int:
    """How many leading words fit in the encoder's token budget (the rest are cut and never read)."""
    if not words:
        return 0
    encoding = text_encoder.tokenizer(words, is_split_into_words=True, truncation=True,
                                      max_length=text_encoder.max_tokens)
    try:
        ids = [i for i in encoding.word_ids() if i is not None]
    except (ValueError, AttributeError):  # slow tokenizers have no word_ids: assume all are read
        return len(words)
    return (max(ids) + 1) if ids else 0


def _as_pil(image: bytes | Image.Image, image_encoder) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return image_encoder.decode(bytes(image))


def _normalise_heat(scores: np.ndarray) -> np.ndarray:
    """Signed saliency → 0..1: the supporting (positive) part scaled by its maximum. When nothing
    supports the prediction, rank by the signed value instead (least opposing = brightest), so the
    map still shows where the picture matters."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64))
    top = scores.max() if scores.size else 0.0
    if top > 1e-12 * max(1.0, float(np.abs(scores).max())):
        return np.clip(scores / top, 0.0, 1.0)
    span = scores.max() - scores.min() if scores.size else 0.0
    if span <= 0:
        return np.zeros_like(scores)
    return (scores - scores.min()) / span


def _rescale(heat: np.ndarray) -> np.ndarray:
    """Clip to 0..1 and put the strongest pixel back at exactly 1 (bilinear resizing shaves the peak)."""
    heat = np.clip(heat, 0.0, None)
    top = float(heat.max()) if heat.size else 0.0
    return np.clip(heat / top, 0.0, 1.0) if top > 0 else heat


def _resize_map(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a small float map (a float32 array becomes a Pillow 'F' image)."""
    small = Image.fromarray(np.asarray(values, dtype=np.float32))
    return np.asarray(small.resize((max(1, width), max(1, height)), Image.Resampling.BILINEAR), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# words
# --------------------------------------------------------------------------------------------
def word_spans(n_words: int, max_spans: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) spans covering the words: one per word up to ``max_spans`` words, else
    ``max_spans`` nearly equal groups (a long review costs a bounded number of encoder passes)."""
    if n_words <= max_spans:
        return [(i, i + 1) for i in range(n_words)]
    edges = np.linspace(0, n_words, max_spans + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def token_attributions(predictor, words: list[str], image_vec: np.ndarray | None, heads: tuple[str, ...],
                       max_spans: int = MAX_TEXT_OCCLUSIONS
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[float]], int, int]:
    """Leave-one-word-out occlusion (leave-one-span-out past ``max_spans`` words; every word of a span
    gets the span's score). Returns (text feature of the full text, head → probabilities of the full
    pair, head → one score per word, number of words the encoder reads, words per span (1 = per word))."""
    encoder = predictor.text_encoder
    n_read = _words_read(encoder, words)
    spans = word_spans(n_read, max_spans)
    variants = [" ".join(words)] + [" ".join(words[:a] + words[b:]) for a, b in spans]
    feats = encoder.encode(variants)  # one batched call; sorted by length inside
    if image_vec is None:
        image_vec = np.zeros((1, predictor.image_encoder.dim), np.float32)
    images = np.repeat(image_vec, len(variants), axis=0)
    full_probs, scores = {}, {}
    for head in heads:
        probs = _probabilities(predictor, head, feats, images)
        target = int(np.argmax(probs[0]))
        drop = probs[0, target] - probs[1:, target]
        per_word = np.zeros(len(words))
        for (a, b), value in zip(spans, drop):
            per_word[a:b] = value
        full_probs[head] = probs[0]
        scores[head] = [float(s) for s in per_word]
    span_size = max((b - a for a, b in spans), default=1)
    return feats[:1], full_probs, scores, n_read, span_size


# --------------------------------------------------------------------------------------------
# image
# --------------------------------------------------------------------------------------------
def _log_odds(logits: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """log p(target) − log(1 − p(target)) per row, target = the row's predicted class by default.

    Evidence for the class against the other two. Unlike the probability (or its log), it does not
    saturate: a head that is 99.99 % sure still has a gradient and still ranks regions. Temperature
    scaling divides it by a constant, so it changes no ranking and is left out."""
    if target is None:
        target = logits.argmax(dim=-1)
    picked = logits.gather(-1, target.view(-1, 1)).squeeze(-1)
    others = logits.masked_fill(torch.nn.functional.one_hot(target, logits.shape[-1]).bool(), float("-inf"))
    return picked - torch.logsumexp(others, dim=-1)


def efficientnet_feature_map(encoder, pil: Image.Image) -> torch.Tensor:
    """EfficientNet-Lite0's last conv map (1, 1280, 7, 7) on CPU; its spatial mean is the encoder's
    feature, exactly as ``forward_features`` computes it."""
    pixels = encoder.preprocess(pil).unsqueeze(0).to(encoder.device)
    pixels = pixels.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return encoder.model.extract_features(pixels).float().cpu()


def gradcam_heatmap(predictor, fmap: torch.Tensor, size: tuple[int, int], text_vec: np.ndarray, head: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of ``head`` over a conv map whose spatial mean is the image feature. Only the small head
    is differentiated (no backward pass through the CNN); the target is the log-odds of the predicted
    class. Returns (head probabilities (3,), heatmap (H, W) in 0..1 over a picture of ``size`` =
    (width, height) that was centre-cropped), or (None, None) when the gradient carries no signal."""
    text_t = torch.as_tensor(text_vec, dtype=torch.float32)
    with torch.enable_grad():
        fmap = fmap.detach().requires_grad_(True)
        logits = predictor.heads(text_t, fmap.mean(dim=(2, 3)))[head]
        (grad,) = torch.autograd.grad(_log_odds(logits)[0], fmap)
    weights = grad.mean(dim=(2, 3), keepdim=True)                       # (1, C, 1, 1)
    cam = (weights * fmap.detach()).sum(dim=1)[0].numpy()               # (7, 7), signed
    if not np.ptp(cam) > 0:
        return None, None  # no gradient signal at all: the caller falls back to occlusion
    heat_small = _normalise_heat(cam)

    width, height = size
    left, top, right, bottom = center_crop_box(width, height, predictor.image_encoder.image_size)
    heat = np.zeros((height, width), np.float32)
    heat[top:bottom, left:right] = _rescale(_resize_map(heat_small, right - left, bottom - top))
    probs = apply_temperature(logits.detach().numpy(), predictor.temperatures[head])[0]
    return probs, heat


def occlusion_saliency(predictor, pil: Image.Image, text_vec: np.ndarray, head: str,
                       grid: int = OCCLUSION_GRID, batch_size: int = 16
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder-agnostic saliency: grey out each cell of a grid over the picture (its mean colour), run the
    encoder's own preprocessing and forward pass, and score the drop in the head's log-odds of its
    predicted class. Returns (image feature of the full picture, head probabilities, heatmap (H, W))."""
    encoder = predictor.image_encoder
    width, height = pil.size
    # Work on a copy no bigger than twice the encoder's input: the encoder downsizes anyway, and
    # preprocessing dozens of full-size photos would dominate the time.
    limit = 2 * int(getattr(encoder, "image_size", 224))
    scale = min(1.0, limit / min(width, height))
    work = pil if scale >= 1.0 else pil.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                               Image.Resampling.BILINEAR)
    w, h = work.size
    short_cells = grid
    long_cells = min(OCCLUSION_MAX_CELLS, max(grid, round(grid * max(w, h) / min(w, h))))
    cols, rows = (long_cells, short_cells) if w >= h else (short_cells, long_cells)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    fill = tuple(int(c) for c in np.asarray(work, dtype=np.float32).reshape(-1, 3).mean(0))

    variants = [work]
    for r in range(rows):
        for c in range(cols):
            occluded = work.copy()
            occluded.paste(fill, (int(xs[c]), int(ys[r]), int(xs[c + 1]), int(ys[r + 1])))
            variants.append(occluded)
    feats = encoder.encode(variants, batch_size=batch_size)
    texts = np.repeat(text_vec, len(variants), axis=0)
    logits = torch.as_tensor(predictor.logits(texts, feats)[head])
    target = logits[0].argmax().repeat(len(variants))
    evidence = _log_odds(logits, target).numpy()      # log-odds: no saturation for a very sure head
    drop = (evidence[0] - evidence[1:]).reshape(rows, cols)
    probs = apply_temperature(logits[:1].numpy(), predictor.temperatures[head])
    heat_cells = _normalise_heat(drop)
    # Nearest-cell upsampling then a light bilinear pass: each cell's value sits over that cell.
    cell_map = np.repeat(np.repeat(heat_cells, 8, axis=0), 8, axis=1)
    heat = _rescale(_resize_map(cell_map, width, height))
    return feats[:1], probs[0], heat


# --------------------------------------------------------------------------------------------
# the pair
# --------------------------------------------------------------------------------------------
def explain_pair(predictor, text: str | None, image: bytes | Image.Image | None) -> Explanation:
    """Word attributions for the text-only and fused heads, saliency over the image for the fused head
    (or the image head when there is no text). Raises ValueError when neither is given."""
    started = time.perf_counter()
    text = text.strip() if isinstance(text, str) else ""
    words = text.split()
    pil = _as_pil(image, predictor.image_encoder) if image is not None else None
    if not words and pil is None:
        raise InputError("nothing to explain: give a text, an image or both")

    notes: list[str] = []
    method: list[str] = []
    predicted: dict[str, str] = {}
    confidence: dict[str, float] = {}
    token_scores: dict[str, list[float]] = {}
    heatmap, heatmap_head = None, None

    def record(head: str, probs: np.ndarray) -> None:
        predicted[head] = LABELS[int(np.argmax(probs))]
        confidence[head] = float(np.max(probs))

    image_vec, fmap = None, None
    text_vec = np.zeros((1, predictor.text_encoder.dim), np.float32)
    gradcam = pil is not None and isinstance(predictor.image_encoder, EfficientNetLite0Encoder)
    # The int8 graph has no gradients: Grad-CAM runs on its fp32 PyTorch twin (features within ~1 %).
    int8_twin = gradcam and isinstance(predictor.image_encoder, EfficientNetLite0Int8Encoder)
    if gradcam:
        # One CNN pass gives both the image feature (for the fused word scores) and the map Grad-CAM
        # needs; the gradient step needs the text feature, so it runs after the words below.
        fmap = efficientnet_feature_map(predictor.image_encoder, pil)
        image_vec = fmap.mean(dim=(2, 3)).numpy()
        if int8_twin:  # scores use the int8 graph's features, like every other prediction
            image_vec = predictor.image_encoder.encode([pil])
    elif pil is not None:
        image_vec = predictor.image_encoder.encode([pil])

    if words:
        heads = ("text", "fused") if pil is not None else ("text",)
        text_vec, full_probs, token_scores, n_read, span = token_attributions(predictor, words, image_vec, heads)
        for head, probs in full_probs.items():
            record(head, probs)
        method.append("word scores: leave-one-word-out occlusion, the drop in the calibrated probability of "
                      "each head's predicted class when the word is left out")
        if n_read < len(words):
            notes.append(f"The model reads only the first {n_read} of {len(words)} words; the rest were not read "
                         "and score 0.")
            method.append(f"the text encoder reads at most {predictor.text_encoder.max_tokens} tokens")
        if span > 1:
            notes.append(f"A long text: words were left out in groups of up to {span} neighbours, and each word "
                         "shows its group's score.")

    if pil is not None:
        heatmap_head = "fused" if words else "image"
        if gradcam:
            probs, heatmap = gradcam_heatmap(predictor, fmap, pil.size, text_vec, heatmap_head)
            if int8_twin:
                probs = _probabilities(predictor, heatmap_head, text_vec, image_vec)[0]
        if heatmap is not None:
            method.append("image saliency: Grad-CAM on EfficientNet-Lite0's last conv map"
                          + (" (its fp32 twin: the int8 graph has no gradients)" if int8_twin else "")
                          + "; the model sees the centre square of the picture, so the cut-off edges are 0")
            notes.append("The model looks only at the centre square of the picture; the edges it cuts off "
                         "stay blue.")
        else:
            _, probs, heatmap = occlusion_saliency(predictor, pil, text_vec, heatmap_head)
            method.append("image saliency: occlusion (each grid cell greyed out in turn, the drop in the head's "
                          "log-odds of its predicted class)")
        record(heatmap_head, probs)
        if "image" not in predicted:
            record("image", _probabilities(predictor, "image", text_vec, image_vec)[0])

    order = {"text": 0, "image": 1, "fused": 2}
    predicted = dict(sorted(predicted.items(), key=lambda kv: order[kv[0]]))
    confidence = {head: confidence[head] for head in predicted}
    return Explanation(tokens=words, token_scores=token_scores, predicted=predicted,
                       heatmap=None if heatmap is None else heatmap.astype(np.float32),
                       heatmap_head=heatmap_head, seconds=time.perf_counter() - started,
                       confidence=confidence, notes=notes, method=method)


# --------------------------------------------------------------------------------------------
# plain text (the CLI)
# --------------------------------------------------------------------------------------------
_REGION_ROWS = ("top", "middle", "bottom")
_REGION_COLS = ("left", "centre", "right")
_ASCII_RAMP = " .:-=+*#%@"


def strongest_region(heatmap: np.ndarray) -> str:
    """Where the heat concentrates, in words ("top left", "centre", ...): the 3×3 cell with the most
    total heat."""
    heat = np.asarray(heatmap, dtype=np.float64)
    h, w = heat.shape
    ys, xs = np.linspace(0, h, 4).round().astype(int), np.linspace(0, w, 4).round().astype(int)
    totals = np.array([[heat[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].mean() if ys[r + 1] > ys[r] and xs[c + 1] > xs[c]
                        else 0.0 for c in range(3)] for r in range(3)])
    r, c = np.unravel_index(int(np.argmax(totals)), totals.shape)
    if (r, c) == (1, 1):
        return "centre"
    if r == 1:
        return f"middle {_REGION_COLS[c]}"
    if c == 1:
        return f"{_REGION_ROWS[r]} centre"
    return f"{_REGION_ROWS[r]} {_REGION_COLS[c]}"


def ascii_heatmap(heatmap: np.ndarray, width: int = 32) -> list[str]:
    """A small character picture of the heatmap (terminal cells are about twice as tall as wide)."""
    heat = np.asarray(heatmap, dtype=np.float32)
    h, w = heat.shape
    rows = max(1, round(width * h / w / 2))
    small = _resize_map(heat, width, rows)
    index = np.clip((small * (len(_ASCII_RAMP) - 1)).round().astype(int), 0, len(_ASCII_RAMP) - 1)
    return ["|" + "".join(_ASCII_RAMP[i] for i in row) + "|" for row in index]


def format_explanation(explanation: Explanation, top_words: int = 12) -> str:
    """An explanation as plain text for the CLI: predictions, then the ``top_words`` strongest words."""
    e = explanation
    lines = ["Predictions"]
    for head, label in e.predicted.items():
        sure = f" ({e.confidence[head]:.0%} sure)" if head in e.confidence else ""
        lines.append(f"  {head:<6} {label}{sure}")
    if e.tokens:
        lines += ["", "Words, strongest first", "  " + TOKEN_SCORE_LEGEND]
        for head, scores in e.token_scores.items():
            lines.append(f"  {head} head → {e.predicted.get(head, '?')}:")
            ranked = sorted(range(len(scores)), key=lambda i: -abs(scores[i]))
            for i in ranked[:top_words]:
                direction = "supports" if scores[i] > 0 else "pushes away" if scores[i] < 0 else "no effect"
                lines.append(f"    {scores[i]:+.3f}  {e.tokens[i]!r:<20} {direction}")
            if len(ranked) > top_words:
                lines.append(f"    … {len(ranked) - top_words} more words with smaller scores")
    if e.heatmap is not None:
        heat = e.heatmap
        strong = float((heat >= 0.5).mean())
        lines += ["", f"Image saliency ({e.heatmap_head} head → {e.predicted.get(e.heatmap_head, '?')})",
                  "  " + HEATMAP_LEGEND,
                  f"  strongest region: {strongest_region(heat)} of the image; "
                  f"{strong:.0%} of the picture is above half strength ({heat.shape[1]}×{heat.shape[0]} px map)"]
        lines += ["  " + row for row in ascii_heatmap(heat)]
    for note in e.notes:
        lines.append(f"note: {note}")
    for step in e.method:
        lines.append(f"method: {step}")
    lines.append(f"explained in {e.seconds:.2f} s")
    return "\n".join(lines)
