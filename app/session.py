"""What the app holds per process: encoders, feature store, head registry and a predictor per version.

The Streamlit pages wrap ``load_engine`` in ``st.cache_resource`` so the encoders load once per
process; everything per user (the version they look at, a head they trained but did not save) lives
in ``st.session_state``. No Streamlit here: the tests and the CLI can build the same engine.

Where the heads come from:
- ``MMSA_HEAD_DIR`` (a version folder: weights.safetensors + card.json) replaces the shipped default
  as the registry's builtin head. Tests point it at a head trained on drawn pairs.
- otherwise the shipped default in ``assets/models/default``.
The registry itself lives under ``MMSA_HOME`` (see core.config); what is *active* is read from it on
every call, so a version activated in one session is what the others get on their next rerun. The
engine's registry acts for nobody by default: activating, rolling back, importing or deleting must
name the browser tab's actor, and a viewer is refused (``core.access``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core import config
from core.features.store import FeatureStore
from core.io.labels import HEAD_NAMES
from core.registry import CARD_FILE, HeadCard, HeadRegistry, RegistryError, open_registry
from core.scoring.predict import Predictor, heads_from_card, load_encoders_for_card

HEAD_DIR_ENV = config.HEAD_DIR_ENV


class EngineUnavailable(RuntimeError):
    """No head to serve (none shipped, none configured): the message says what to do."""


def engine_key() -> tuple[str, str]:
    """What identifies an engine: the registry folder and the builtin head (the pages cache on it)."""
    return str(config.registry_root()), str(config.default_head_dir())


def device_description() -> str:
    """The device the encoders and heads run on (``MMSA_DEVICE``, else a GPU when present), in words."""
    from core.device import choose_device, describe_device

    return describe_device(choose_device())


@dataclass
class Engine:
    """Encoders + store + registry, shared by every session of one process."""

    text_encoder: object
    image_encoder: object
    store: FeatureStore
    registry: HeadRegistry
    _predictors: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def active_version(self) -> str:
        return self.registry.active_version()

    def predictor(self, version: str | None = None) -> Predictor:
        """The predictor of ``version`` (default: the active one). Versions are immutable once saved,
        so each is built once and kept."""
        version = version or self.active_version()
        with self._lock:
            if version not in self._predictors:
                tensors, card = self.registry.load(version)
                self._predictors[version] = self.predictor_from(tensors, card)
            return self._predictors[version]

    def predictor_from(self, tensors, card: HeadCard) -> Predictor:
        """A predictor for heads that are not saved (a correction a user is still looking at)."""
        return Predictor(self.text_encoder, self.image_encoder, heads_from_card(tensors, card), card, self.store)

    def expected(self) -> dict:
        """What an uploaded version must match to run here (for HeadRegistry.import_zip)."""
        base = self.predictor()
        return {"text_encoder": {"id": self.text_encoder.id, "dim": self.text_encoder.dim},
                "image_encoder": {"id": self.image_encoder.id, "dim": self.image_encoder.dim},
                "tensor_shapes": base.heads.tensor_shapes()}


def load_engine(head_dir: Path | None = None, encoders: Callable[[HeadCard], tuple] | None = None) -> Engine:
    """Open the registry, load the encoders the active head names, open the feature store.
    ``encoders(card) -> (text, image)`` lets a caller reuse encoders it already holds."""
    from core.threads import start_torch_threads

    start_torch_threads()  # the server process's torch threads, once, before any model work
    head_dir = head_dir or config.default_head_dir()
    # Shared by every browser tab: a change must name the tab's actor (app_pages.common.current_actor),
    # so a page that forgets to is refused rather than acting as the machine's user.
    registry = open_registry(head_dir, actor=None)
    try:
        version = registry.active_version()
        card = registry.card(version)
    except RegistryError as error:
        hint = (f"no head found: the shipped default ({head_dir / CARD_FILE}) is missing. Train one with "
                f"`python -m core.cli train …`, or point {HEAD_DIR_ENV} at a head version folder")
        raise EngineUnavailable(f"{hint} ({error})") from error
    text_encoder, image_encoder = (encoders or load_encoders_for_card)(card)
    store = FeatureStore(config.feature_store_path())
    engine = Engine(text_encoder, image_encoder, store, registry)
    engine.predictor(version)  # fail now (wrong encoders, corrupt weights), not on the first click
    return engine


def resplit_summary(card: HeadCard) -> dict | None:
    """The recipe's re-split figures a card carries (``python -m core.cli resplit --attach``):
    {k, pool, how, heads: {head: {accuracy, weighted_f1: {mean, sd}}}, machine, measured_at}, or None."""
    block = card.resplit
    try:
        heads = {head: {metric: {"mean": float(block["summary"][head][metric]["mean"]),
                                 "sd": float(block["summary"][head][metric]["sd"] or 0.0)}
                        for metric in ("accuracy", "weighted_f1")}
                 for head in HEAD_NAMES}
        return {"k": len(block["seeds"]), "pool": int(block["pool"]), "heads": heads,
                "how": "frozen text encoder" if block.get("frozen") else "text adapter retrained per split",
                "machine": dict(block["machine"]), "measured_at": str(block["measured_at"])}
    except (KeyError, TypeError, ValueError):
        return None


def headline_metrics(card: HeadCard) -> dict[str, dict]:
    """{split: {head: {accuracy, weighted_f1}}} from a card: test, dev, then the reference numbers a
    corrected version records; empty when none are recorded."""
    metrics = card.metrics or {}
    out = {}
    for split in ("test", "dev", "reference"):
        block = metrics.get(split) or {}
        heads = {head: {"accuracy": block[head].get("accuracy"), "weighted_f1": block[head].get("weighted_f1")}
                 for head in HEAD_NAMES if isinstance(block.get(head), dict)}
        if heads:
            out[split] = {"n": block.get("n"), **heads}
    return out
