"""A run's posts scored again by other head versions, from the features already in the store: no
encoder is loaded and nothing is encoded; only the small heads run.

A version is named by its id in the registry or by a version folder on disk. Each version reads the
vectors filed under its own card's encoder ids, so two versions trained on the same encoders share
one lookup; a post whose vectors are not in the store is left out and counted (``missing``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.encoders.base import stored_feature_ids
from core.errors import InputError
from core.features.store import FeatureStore
from core.insights.compare import Comparison, compare_predictions
from core.insights.features import has_text, image_keys, stored_vectors, text_keys
from core.io.labels import LABELS
from core.registry.card import EncoderRef, HeadCard


class VersionNotFound(InputError):
    """A version reference that is neither a version of the registry nor a version folder."""


@dataclass
class Version:
    """A head version ready to score features: its name (id or folder), tensors and card."""
    name: str
    tensors: dict
    card: HeadCard


def resolve_version(reference: str, registry=None) -> Version:
    """The version ``reference`` names: a folder holding a version (weights + card), else a version id
    of ``registry`` (default: the user's, ``core.registry.open_registry``)."""
    from core.registry import CARD_FILE, RegistryError, open_registry, read_version_folder

    folder = Path(str(reference)).expanduser()
    if ("/" in str(reference) or folder.is_dir()) and not (folder / CARD_FILE).is_file():
        raise VersionNotFound(f"{reference!r} is not a head version folder (no {CARD_FILE} there)")
    try:
        if (folder / CARD_FILE).is_file():
            tensors, card = read_version_folder(folder)
            return Version(str(folder), tensors, card)
        registry = registry if registry is not None else open_registry()
        tensors, card = registry.load(str(reference))
    except RegistryError as error:
        raise VersionNotFound(f"head version {reference!r}: {error}") from None
    return Version(str(reference), tensors, card)


class _CachedOnly:
    """Stands in for an encoder the card names: it carries the id and size, and refuses to encode
    (only the store's vectors are used here)."""

    def __init__(self, info: EncoderRef):
        self.spec, self.id, self.dim = info.spec, info.id, int(info.dim)
        self.feature_key = self.id

    def describe(self) -> str:
        return str(self.spec)

    def encode(self, _items):  # pragma: no cover - a programming error if ever reached
        raise RuntimeError("re-scoring reads stored features only; nothing may be encoded here")


def features_predictor(version: Version, store: FeatureStore):
    """A ``core.scoring.predict.Predictor`` for ``version`` whose encoders are stand-ins: its
    ``probabilities`` run the heads and the card's temperatures on given features, on the CPU."""
    from core.scoring.predict import Predictor

    encoders = (_CachedOnly(version.card.text_encoder), _CachedOnly(version.card.image_encoder))
    return Predictor.from_card(version.tensors, version.card, store, encoders=encoders, device="cpu",
                               precision="fp32")


def predicted_classes(probs: dict[str, np.ndarray]) -> np.ndarray:
    """Each post's class as a batch run reports it: the fused head's, else the text head's, else the
    image head's (None where no head had its input) — the rule of ``core.scoring.batch``."""
    n = len(next(iter(probs.values())))
    out = np.full(n, None, dtype=object)
    for head in ("image", "text", "fused"):  # the last one written wins
        p = np.asarray(probs[head], dtype=float)
        usable = ~np.isnan(p).any(axis=1)
        out[usable] = np.asarray(LABELS, dtype=object)[p[usable].argmax(axis=1)]
    return out


@dataclass
class Rescored:
    """Each version's predicted class per post (None where it has none), and the posts whose stored
    features were missing for at least one version."""
    classes: dict[str, np.ndarray]
    missing: np.ndarray
    notes: list[str] = field(default_factory=list)


def rescore(versions: Sequence[Version], store: FeatureStore, texts: Sequence,
            image_paths: Sequence | None = None, *, keys: dict | None = None) -> Rescored:
    """Score the posts (``texts``, and ``image_paths``: files or None) with each version from the
    store's vectors. ``keys``: store keys already computed ({"text": [...], "image": [...]}), so image
    files are not read and hashed again."""
    n = len(texts)
    keys = dict(keys or {})
    keys.setdefault("text", text_keys(texts))
    if "image" not in keys:
        keys["image"] = image_keys(image_paths) if image_paths is not None else [None] * n
    wants_text = np.array([has_text(t) for t in texts], dtype=bool)
    wants_image = np.array([k is not None for k in keys["image"]], dtype=bool)
    lookups: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    variants: dict[str, int] = {}  # "text features computed under bf16 autocast" -> posts

    def vectors(kind: str, info: EncoderRef) -> tuple[np.ndarray, np.ndarray]:
        cache_key = (str(info.id), int(info.dim))
        if cache_key not in lookups:
            ids = stored_feature_ids(cache_key[0])
            found, source = stored_vectors(store, list(ids), keys[kind], cache_key[1])
            for index in np.unique(source[source > 0]):
                variants[f"{kind} features computed {list(ids.values())[index]}"] = int(np.sum(source == index))
            lookups[cache_key] = found, source >= 0
        return lookups[cache_key]

    classes, missing = {}, np.zeros(n, dtype=bool)
    for version in versions:
        text, text_found = vectors("text", version.card.text_encoder)
        image, image_found = vectors("image", version.card.image_encoder)
        lost = (wants_text & ~text_found) | (wants_image & ~image_found)
        predictor = features_predictor(version, store)
        probs = predictor.probabilities(text, image, wants_text & text_found, wants_image & image_found)
        predicted = predicted_classes(probs)
        predicted[lost] = None
        classes[version.name] = predicted
        missing |= lost
    notes = []
    if missing.any():
        notes.append(f"{int(missing.sum())} posts' features are not in the feature store (cleared, or the run was "
                     "scored on another machine) and are left out; score the run again to store them")
    notes += [f"{count} posts' {what} on the machine that scored them (close to the standard ones, not equal)"
              for what, count in variants.items()]
    return Rescored(classes, missing, notes)


def compare_versions(a: str | Version, b: str | Version, store: FeatureStore, texts: Sequence,
                     image_paths: Sequence | None = None, labels: Sequence | None = None, *,
                     registry=None, keys: dict | None = None) -> tuple[Comparison, Rescored]:
    """Version ``a`` against version ``b`` (ids, folders or ``Version``s) on the same posts, scored
    from the store: the comparison and both versions' classes. Two references to the same version
    are refused (there is nothing to compare)."""
    va = a if isinstance(a, Version) else resolve_version(a, registry)
    vb = b if isinstance(b, Version) else resolve_version(b, registry)
    if va.name == vb.name:
        raise InputError(f"both versions are {va.name!r}: name two different versions")
    rescored = rescore([va, vb], store, texts, image_paths, keys=keys)
    comparison = compare_predictions(rescored.classes[va.name], rescored.classes[vb.name], labels,
                                     names=(va.name, vb.name))
    comparison.notes[:0] = rescored.notes
    return comparison, rescored
