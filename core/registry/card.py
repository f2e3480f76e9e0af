"""What a head version is: the names of its files, the size limits of an upload, its card (``HeadCard``:
typed fields checked once by ``from_dict`` and written back unchanged by ``to_dict``, as transformers'
``PretrainedConfig`` does) and whether a version fits the running encoders (``check_compatible``).

A card reads like this (``card.json``; fields the registry does not know are kept as they are)::

    {"labels": [...], "text_encoder": {"spec", "id", "dim", "adapter"}, "image_encoder": {"spec", "id", "dim"},
     "hidden", "members", "dropout", "temperatures": {"text", "image", "fused"}, "conflict_threshold",
     "training": {...}, "metrics": {...}, "machine": {...}, "note", "parent", "created_at", "version",
     "weights_sha256", "imported_from"}
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core import config
from core.errors import InputError
from core.io.labels import LABELS

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
# A version may keep its own LoRA text adapter in this sub-folder (an imported one that carried it);
# its card then says ``"adapter": VERSION_ADAPTER``.
ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what peft needs, safetensors only
VERSION_ADAPTER = f"version:{ADAPTER_DIR}"
# Heads are small MLPs over frozen features (a few MB); 50 MB leaves room and still stops
# a mistaken or hostile upload from filling memory or disk. A LoRA adapter of a small encoder is a few MB.
MAX_WEIGHTS_BYTES = 50 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
MAX_ADAPTER_BYTES = 50 * 1024 * 1024
MAX_ADAPTER_CONFIG_BYTES = 64 * 1024
MAX_ZIP_BYTES = MAX_WEIGHTS_BYTES + MAX_CARD_BYTES + MAX_ADAPTER_BYTES + MAX_ADAPTER_CONFIG_BYTES + 64 * 1024
# Letters, digits, dot, underscore, dash; no leading dot, so no "..", no hidden/temp folders.
VERSION_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class RegistryError(InputError):
    """Anything wrong with a head version: bad id, missing or corrupt files, incompatible upload."""


def check_version_id(version: object) -> str:
    """Return `version` if it is a safe folder name, else raise (stops '../../etc' and friends)."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise RegistryError(
            f"invalid head version id {version!r}: use only letters, digits, '.', '_', '-' "
            "(not starting with '.', at most 128 characters)"
        )
    return version


def json_default(value: object) -> object:
    """JSON for numpy / torch scalars and arrays, which trainers hand over in metrics: plain numbers."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _normalised(data: Mapping) -> dict:
    """A JSON round trip: what is checked is exactly what will be stored and read back."""
    try:
        return json.loads(json.dumps(data, default=json_default))
    except (TypeError, ValueError) as error:
        raise RegistryError(f"card cannot be stored as JSON: {error}") from error


# ----- field checks: field -> (test, what its value must be) --------------------------------------------

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


_Check = tuple[Callable[[object], bool], str]
_ENCODER_CHECKS: dict[str, _Check] = {
    "spec": (_is_text, "a non-empty string"),
    "id": (_is_text, "a non-empty string"),
    "dim": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "adapter": (lambda v: v is None or isinstance(v, str), "a folder name or null"),
}
_CARD_CHECKS: dict[str, _Check] = {
    "hidden": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "members": (lambda v: _is_int(v) and 1 <= v <= 64, "an integer from 1 to 64"),
    "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "conflict_threshold": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "temperatures": (lambda v: isinstance(v, dict) and all(_is_number(t) and t > 0 for t in v.values()),
                     "an object mapping names to positive numbers"),
    **{key: (lambda v: isinstance(v, dict), "an object") for key in ("training", "metrics", "machine", "resplit")},
    **{key: (lambda v: isinstance(v, str), "a string") for key in ("note", "created_at", "weights_sha256", "version")},
    **{key: (lambda v: v is None or isinstance(v, str), "a version string or null") for key in ("parent", "imported_from")},
    "builtin": (lambda v: isinstance(v, bool), "true or false"),
}
_ENCODER_REQUIRED = ("spec", "id", "dim")


_NOT_STORED = {"stored": False}  # dataclass fields that are bookkeeping, not card fields


def _field_defaults(cls) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get("stored", True)}


def _ordered_dict(obj, nested: tuple[str, ...] = ()) -> dict:
    """``obj``'s fields and extras as a plain dict, in the order they were read; a field set later is
    written only when it differs from its default (absent and default are the same thing), a field
    read as null stays null."""
    defaults = _field_defaults(type(obj))
    values = {name: getattr(obj, name) for name in defaults}
    out: dict = {}
    for key in obj._keys:
        if key in values:
            out[key] = values.pop(key)
        elif key in obj.extra:
            out[key] = obj.extra[key]
    out.update({name: value for name, value in values.items() if value != defaults[name]})
    out.update({key: value for key, value in obj.extra.items() if key not in out})
    for name in nested:
        if name in out:
            out[name] = out[name].to_dict()
    return copy.deepcopy(out)


def _problem(name: str, what: str, value: object) -> str:
    shown = type(value).__name__ if what == "an object" else repr(value)
    return f"{name} must be {what}, got {shown}"


@dataclass(frozen=True)
class EncoderRef:
    """A card's ``text_encoder`` / ``image_encoder``: the encoder the heads were trained on. ``adapter``
    (text only) is a LoRA folder: a path (repo-relative or absolute) or ``VERSION_ADAPTER``."""

    spec: str
    id: str
    dim: int
    adapter: str | None = None
    extra: dict = field(default_factory=dict, repr=False, metadata=_NOT_STORED)
    _keys: tuple[str, ...] = field(default=(), repr=False, compare=False, metadata=_NOT_STORED)

    @classmethod
    def _read(cls, name: str, data: object, problems: list[str]) -> EncoderRef | None:
        if not isinstance(data, dict):
            problems.append(_problem(name, "an object with spec, id, dim", data))
            return None
        before = len(problems)
        for key, (test, what) in _ENCODER_CHECKS.items():
            if (key in data or key in _ENCODER_REQUIRED) and not test(data.get(key)):
                problems.append(_problem(f"{name}.{key}", what, data.get(key)))
        if len(problems) > before:
            return None
        known = {key: data[key] for key in _ENCODER_CHECKS if key in data}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _ENCODER_CHECKS}, _keys=tuple(data))

    def to_dict(self) -> dict:
        """The entry as the card stores it (exactly what was read, plus any field set since)."""
        return _ordered_dict(self)


@dataclass(frozen=True)
class HeadCard:
    """The card of a head version: which encoders and labels the heads were trained on, their shape, the
    calibration temperatures, how they were trained and measured. ``from_dict`` checks every field (one
    RegistryError naming every problem); ``to_dict`` gives back exactly what was read, unknown fields
    included. ``folder`` is the version folder it was read from (not stored: it lets a card find an
    adapter kept in its version's folder)."""

    labels: list[str]
    text_encoder: EncoderRef
    image_encoder: EncoderRef
    hidden: int | None = None
    members: int | None = None
    dropout: float | None = None
    temperatures: dict[str, float] | None = None
    conflict_threshold: float | None = None
    training: dict | None = None
    metrics: dict | None = None
    machine: dict | None = None
    resplit: dict | None = None
    note: str | None = None
    created_at: str | None = None
    weights_sha256: str | None = None
    version: str | None = None
    parent: str | None = None
    imported_from: str | None = None
    builtin: bool = False  # the shipped default (set by the registry when it reads it)
    extra: dict = field(default_factory=dict, repr=False, metadata=_NOT_STORED)
    _keys: tuple[str, ...] = field(default=(), repr=False, compare=False, metadata=_NOT_STORED)
    folder: Path | None = field(default=None, repr=False, compare=False, metadata=_NOT_STORED)

    @classmethod
    def from_dict(cls, data: object, *, folder: Path | None = None) -> HeadCard:
        """Check a card's fields and build it; RegistryError naming every problem. Required: labels,
        text_encoder, image_encoder (without them nobody can tell whether the heads fit the running
        encoders); the rest is checked when present. Numpy / torch scalars become plain numbers."""
        if not isinstance(data, Mapping):
            raise RegistryError(f"card must be a JSON object, got {type(data).__name__}")
        data = _normalised(data)
        problems: list[str] = []
        labels = data.get("labels")
        if not (isinstance(labels, list) and len(labels) == len(LABELS) and all(isinstance(x, str) for x in labels)):
            problems.append(f"labels must be a list of {len(LABELS)} strings, got {labels!r}")
        encoders = {name: EncoderRef._read(name, data.get(name), problems) for name in ("text_encoder", "image_encoder")}
        for key, (test, what) in _CARD_CHECKS.items():
            if key in data and not test(data[key]):
                problems.append(_problem(key, what, data[key]))
        if problems:
            raise RegistryError("invalid card: " + "; ".join(problems))
        known = {key: data[key] for key in _CARD_CHECKS if key in data}
        extra = {k: v for k, v in data.items() if k not in _CARD_CHECKS and k not in ("labels", *encoders)}
        return cls(labels=labels, **encoders, **known, extra=extra, _keys=tuple(data), folder=folder)

    @classmethod
    def coerce(cls, card: HeadCard | Mapping) -> HeadCard:
        """``card`` itself, or a plain dict checked by ``from_dict``."""
        return card if isinstance(card, HeadCard) else cls.from_dict(card)

    def to_dict(self) -> dict:
        """The card as ``card.json`` stores it: exactly what was read (field order, nulls and unknown
        fields included), plus any field set since."""
        return _ordered_dict(self, nested=("text_encoder", "image_encoder"))

    def replace(self, **changes) -> HeadCard:
        """A copy with some fields changed (cards are immutable: every page and session may share one)."""
        return dataclasses.replace(self, **changes)

    def temperature(self, head: str) -> float:
        """The calibration temperature of ``head`` ('text', 'image', 'fused'); 1.0 when none was fitted."""
        return float((self.temperatures or {}).get(head, 1.0))

    def adapter_dir(self) -> Path | None:
        """The folder of the text encoder's LoRA adapter, or None without one: the version's own
        ``adapter/`` for ``VERSION_ADAPTER``, else the path the card names (repo-relative or absolute)."""
        adapter = self.text_encoder.adapter
        if adapter != VERSION_ADAPTER:
            return config.resolve_repo_path(adapter)
        if self.folder is None:
            raise RegistryError("the card's text adapter is kept in its version folder, but this card was not "
                                "read from one")
        return self.folder / ADAPTER_DIR


def validate_card(card: object) -> dict:
    """Check a card as ``HeadCard.from_dict`` does and return it as a plain dict (for callers that keep dicts)."""
    return HeadCard.from_dict(card).to_dict()


def check_compatible(card: HeadCard, tensor_shapes: dict[str, tuple[int, ...]], expected: dict | None) -> None:
    """Raise RegistryError naming every difference between a head version and what the app runs.

    `expected` = {"text_encoder": {"id", "dim"}, "image_encoder": {...},
                  "tensor_shapes": {name: shape}, "labels": [...] (optional, default LABELS)}.
    Labels are always checked: heads trained on another class order would silently mislabel.
    """
    expected = expected or {}
    problems: list[str] = []

    want_labels = list(expected.get("labels", LABELS))
    if card.labels != want_labels:
        problems.append(f"labels differ: file has {card.labels}, app uses {want_labels}")

    for key in ("text_encoder", "image_encoder"):
        want = expected.get(key)
        if not want:
            continue
        have = getattr(card, key)
        for name in ("id", "dim"):
            if name in want and getattr(have, name) != want[name]:
                problems.append(
                    f"{key}.{name} differs: file was trained on {getattr(have, name)!r}, app runs {want[name]!r}"
                )

    want_shapes = expected.get("tensor_shapes")
    if want_shapes is not None:
        want_shapes = {name: tuple(shape) for name, shape in want_shapes.items()}
        have_shapes = {name: tuple(shape) for name, shape in tensor_shapes.items()}
        missing = sorted(set(want_shapes) - set(have_shapes))
        extra = sorted(set(have_shapes) - set(want_shapes))
        if missing:
            problems.append(f"missing tensors: {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected tensors: {', '.join(extra)}")
        for name in sorted(set(want_shapes) & set(have_shapes)):
            if want_shapes[name] != have_shapes[name]:
                problems.append(
                    f"tensor {name} has shape {list(have_shapes[name])}, expected {list(want_shapes[name])}"
                )

    if problems:
        raise RegistryError("head version does not fit this app: " + "; ".join(problems))
