"""Predictor = encoders + feature store + heads + temperatures.

Gives the text-only, image-only and fused probabilities side by side, the prediction, its
confidence and the modality-conflict flag. Only the heads whose inputs exist are reported: a pair
without an image has no image-only and no fused result (the UI says why).
"""
from __future__ import annotations

import copy
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import config
from core.device import choose_device
from core.encoders import load_image_encoder, load_text_encoder
from core.errors import InputError
from core.features.store import FeatureStore, cached_features, content_key, text_features
from core.heads.calibration import apply_temperature
from core.heads.model import HeadConfig, HeadShape, LateFusionHeads
from core.io.labels import HEAD_NAMES, LABELS
from core.registry.card import HeadCard
from core.scoring.answer import answering_heads
from core.scoring.conflict import CONFLICT_THRESHOLD, conflict_flags
from core.scoring.precision import apply_precision


class HeadMismatch(InputError):
    """A head version trained on other encoders than the ones loaded."""


@dataclass
class PairPrediction:
    """One pair scored: probabilities per head, the label with its confidence and source head, the conflict flag,
    warnings, timings."""
    probs: dict[str, np.ndarray | None]          # head → (3,) probabilities, None when absent
    label: str | None                            # from the fused head, else the one head present
    confidence: float | None
    source: str | None                           # which head gave ``label``
    conflict: bool
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    missing_reason: str | None = None


def heads_from_card(tensors: dict[str, torch.Tensor], card: HeadCard | dict) -> LateFusionHeads:
    """LateFusionHeads built from a version's tensors with the shape its card records."""
    card = HeadCard.coerce(card)
    shape = HeadShape.from_card(card)
    head = HeadConfig(text_dim=card.text_encoder.dim, image_dim=card.image_encoder.dim,
                      hidden=shape.hidden, dropout=shape.dropout, members=shape.members)
    return LateFusionHeads.from_tensors(tensors, head)


def check_card_matches(card: HeadCard | dict, text_encoder, image_encoder) -> None:
    """Raise HeadMismatch unless the card's encoder ids and sizes are those of the loaded encoders."""
    card = HeadCard.coerce(card)
    for kind, encoder in (("text encoder", text_encoder), ("image encoder", image_encoder)):
        want = card.text_encoder if kind == "text encoder" else card.image_encoder
        if want.id != encoder.id or want.dim != encoder.dim:
            raise HeadMismatch(
                f"this head version was trained on {kind} '{want.spec}' "
                f"(id {want.id}, {want.dim}-d) but '{encoder.describe()}' "
                f"(id {encoder.id}, {encoder.dim}-d) is loaded; train a head for these encoders or load "
                f"the encoders the head names")


class Predictor:
    """Scores pairs with one head version: encoders, heads, calibration temperatures and the feature store
    together."""
    def __init__(self, text_encoder, image_encoder, heads: LateFusionHeads, card: HeadCard | dict,
                 store: FeatureStore | None = None, device: str | torch.device | None = None,
                 precision: str | None = None):
        """``device``: where the heads score (default: the text encoder's device, else the CPU);
        ``precision``: 'auto' / 'fp32' / 'fp16' / 'bf16' for the encoders (``core.scoring.precision``:
        autocast only after its check passes; default ``$MMSA_PRECISION``, else fp16 on a GPU, fp32 on
        the CPU). A plain dict ``card`` is checked by ``HeadCard.from_dict``."""
        card = HeadCard.coerce(card)
        check_card_matches(card, text_encoder, image_encoder)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        # ``heads`` stays the CPU master copy that corrections and Grad-CAM differentiate and versions
        # save; scoring runs on ``device_heads``, the same module on the CPU or a copy on a GPU.
        self.heads = heads.eval()
        if device is not None:
            self.device = choose_device(device)
        else:
            self.device = getattr(text_encoder, "device", None) or torch.device("cpu")
        self.device_heads = self.heads if self.device.type == "cpu" else copy.deepcopy(self.heads).to(self.device)
        self.card = card
        self.store = store if store is not None else FeatureStore(None)
        self.temperatures = {name: card.temperature(name) for name in HEAD_NAMES}
        self.conflict_threshold = float(CONFLICT_THRESHOLD if card.conflict_threshold is None else card.conflict_threshold)
        # None in fp32; else the autocast check, and a notice when autocast was asked for and refused.
        self.precision_check, self.notice = apply_precision(self, precision)

    @classmethod
    def from_card(cls, tensors: dict[str, torch.Tensor], card: HeadCard | dict, store: FeatureStore | None = None,
                  encoders: tuple | None = None, device: str | torch.device | None = None,
                  precision: str | None = None) -> Predictor:
        """Build encoders the card names on ``device`` (or reuse ``encoders`` = (text, image) already loaded)."""
        card = HeadCard.coerce(card)
        if encoders is None:
            # Without a device the plain one-argument call (its default device is the same), which
            # callers that swap in their own ``encoders(card)`` rely on.
            encoders = load_encoders_for_card(card) if device is None else load_encoders_for_card(card, device=device)
        return cls(encoders[0], encoders[1], heads_from_card(tensors, card), card, store, device=device,
                   precision=precision)

    # ----- features → probabilities --------------------------------------------------------
    @torch.no_grad()
    def logits(self, text: np.ndarray, image: np.ndarray) -> dict[str, np.ndarray]:
        """Text and image feature matrices → raw logits per head."""
        out = self.device_heads(torch.as_tensor(text, dtype=torch.float32).to(self.device),
                                torch.as_tensor(image, dtype=torch.float32).to(self.device))
        return {name: value.cpu().numpy() for name, value in out.items()}

    def probabilities(self, text: np.ndarray, image: np.ndarray, has_text: np.ndarray,
                      has_image: np.ndarray) -> dict[str, np.ndarray]:
        """head → (n, 3) calibrated probabilities; rows lacking a head's input are NaN."""
        logits = self.logits(text, image)
        present = {"text": has_text, "image": has_image, "fused": has_text & has_image}
        probs = {}
        for name in HEAD_NAMES:
            p = apply_temperature(logits[name], self.temperatures[name])
            p[~present[name]] = np.nan
            probs[name] = p
        return probs

    def conflicts(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """Per row, whether the text-only and image-only heads disagree (the modality-conflict rule)."""
        text, image = np.nan_to_num(probs["text"]), np.nan_to_num(probs["image"])
        return conflict_flags(text, image, self.conflict_threshold)

    # ----- one pair (the explorer page) ----------------------------------------------------
    def predict_pair(self, text: str | None = None, image: bytes | Image.Image | None = None) -> PairPrediction:
        """Score one text and/or one image (bytes or PIL picture): a PairPrediction."""
        started = time.perf_counter()
        timings, warnings = {}, []
        text = text.strip() if isinstance(text, str) else None
        text_vec = np.zeros((1, self.text_encoder.dim), np.float32)
        image_vec = np.zeros((1, self.image_encoder.dim), np.float32)
        if text:
            t0 = time.perf_counter()
            text_vec = text_features(self.text_encoder, self.store, [text])
            timings["text_ms"] = (time.perf_counter() - t0) * 1000
            if self.text_encoder.truncated([text])[0]:
                warnings.append(f"text longer than {self.text_encoder.max_tokens} tokens: only the start was read")
        if image is not None:
            t0 = time.perf_counter()
            image_vec = self.image_vector(image)
            timings["image_ms"] = (time.perf_counter() - t0) * 1000
        probs = self.probabilities(text_vec, image_vec, np.array([bool(text)]), np.array([image is not None]))
        pair_probs = {name: None if np.isnan(p[0]).any() else p[0] for name, p in probs.items()}
        source = answering_heads({name: np.array([p is not None]) for name, p in pair_probs.items()})[0]
        label = confidence = None
        if source:
            label = LABELS[int(np.argmax(pair_probs[source]))]
            confidence = float(np.max(pair_probs[source]))
        conflict = bool(text and image is not None and self.conflicts(probs)[0])
        missing = None
        if not text and image is None:
            missing = "Give a text, an image or both."
        elif not text:
            missing = "No text given: only the image-only head can answer, so there is no fused result."
        elif image is None:
            missing = "No image given: only the text-only head can answer, so there is no fused result."
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        return PairPrediction(pair_probs, label, confidence, source, conflict, warnings, timings, missing)

    def image_vector(self, image: bytes | Image.Image) -> np.ndarray:
        """Features of one image through the store (bytes are hashed; a PIL image is re-encoded as PNG
        only to get a stable key)."""
        if isinstance(image, Image.Image):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            blob, decoded = buffer.getvalue(), image.convert("RGB")
        else:
            blob, decoded = bytes(image), None
        key = content_key(blob)

        def encode_missing(_positions):
            pil = decoded if decoded is not None else self.image_encoder.decode(blob)
            return self.image_encoder.encode([pil])

        return cached_features(self.store, self.image_encoder.feature_key, self.image_encoder.dim, [key], encode_missing)


def load_encoders_for_card(card: HeadCard | dict, device: str | torch.device | None = None):
    """(text encoder, image encoder) as a card names them, the text adapter included, on ``device``
    (default: ``core.device.choose_device()``)."""
    card = HeadCard.coerce(card)
    return load_encoders(card.text_encoder.spec, card.adapter_dir(), card.image_encoder.spec, device)


def load_encoders(text_spec: str, adapter: str | Path | None, image_spec: str,
                  device: str | torch.device | None = None):
    """(text encoder, image encoder) for two specs and a LoRA adapter folder (None for none), on ``device``.
    A text spec recorded with its adapter (``spec+adapter:NAME``) loads the plain spec plus ``adapter``."""
    device = choose_device(device)
    return (load_text_encoder(text_spec.split("+adapter:")[0], adapter=adapter, device=device),
            load_image_encoder(image_spec, device=device))


def load_default_predictor(store: FeatureStore | None = None, version: str | None = None,
                           head_path: str | Path | None = None, device: str | torch.device | None = None,
                           precision: str | None = None) -> Predictor:
    """The active head of the user's registry (the shipped default unless they activated another),
    a named version, or a version folder on disk; on ``device`` (default: ``$MMSA_DEVICE``, else a GPU
    when present, else the CPU) with the encoders in ``precision`` (see ``Predictor``)."""
    from core.registry import BUILTIN_ALIAS, RegistryError, open_registry, read_version_folder

    if store is None:
        store = FeatureStore(config.feature_store_path())
    if head_path is not None:
        tensors, card = read_version_folder(Path(head_path))
    elif version is not None:
        tensors, card = open_registry().load(version)
    else:
        registry = open_registry()
        active = registry.active_version()  # the shipped default, with a warning, when the active one is damaged
        try:
            tensors, card = registry.load(active)
        except RegistryError as error:  # damaged between the check and the read
            logging.getLogger(__name__).warning("%s; serving the shipped default instead", error)
            tensors, card = registry.load(BUILTIN_ALIAS)
    return Predictor.from_card(tensors, card, store, device=device, precision=precision)
