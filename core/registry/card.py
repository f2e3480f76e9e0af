"""What a head version is and what it may contain: the two file names, the size limits of an upload,
the card's fields and types (``validate_card``), whether a version fits the running encoders
(``check_compatible``) and the weights' own checks (float32 tensors, safetensors only, sha256)."""
from __future__ import annotations

import hashlib
import json
import re

import torch
from safetensors.torch import load as load_safetensors_bytes

from core.errors import InputError
from core.io.labels import LABELS

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
# Heads are small MLPs over frozen features (a few MB); 50 MB leaves room and still stops
# a mistaken or hostile upload from filling memory or disk.
MAX_WEIGHTS_BYTES = 50 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
MAX_ZIP_BYTES = MAX_WEIGHTS_BYTES + MAX_CARD_BYTES + 64 * 1024
# Letters, digits, dot, underscore, dash; no leading dot, so no "..", no hidden/temp folders.
_VERSION_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class RegistryError(InputError):
    """Anything wrong with a head version: bad id, missing or corrupt files, incompatible upload."""


def check_version_id(version: object) -> str:
    """Return `version` if it is a safe folder name, else raise (stops '../../etc' and friends)."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise RegistryError(
            f"invalid head version id {version!r}: use only letters, digits, '.', '_', '-' "
            "(not starting with '.', at most 128 characters)"
        )
    return version


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_card(card: object) -> dict:
    """Check the types of a card's fields; return it. Unknown extra fields are allowed and kept.

    Required: labels, text_encoder, image_encoder (without them nobody can tell whether the
    heads fit the running encoders). The rest is type-checked only when present.
    """
    if not isinstance(card, dict):
        raise RegistryError(f"card must be a JSON object, got {type(card).__name__}")
    problems: list[str] = []

    labels = card.get("labels")
    if not (isinstance(labels, list) and len(labels) == len(LABELS) and all(isinstance(x, str) for x in labels)):
        problems.append(f"labels must be a list of {len(LABELS)} strings, got {labels!r}")

    for key in ("text_encoder", "image_encoder"):
        encoder = card.get(key)
        if not isinstance(encoder, dict):
            problems.append(f"{key} must be an object with spec, id, dim; got {encoder!r}")
            continue
        for field in ("spec", "id"):
            if not isinstance(encoder.get(field), str) or not encoder.get(field):
                problems.append(f"{key}.{field} must be a non-empty string, got {encoder.get(field)!r}")
        if not (_is_int(encoder.get("dim")) and encoder["dim"] > 0):
            problems.append(f"{key}.dim must be a positive integer, got {encoder.get('dim')!r}")

    if "hidden" in card and not (_is_int(card["hidden"]) and card["hidden"] > 0):
        problems.append(f"hidden must be a positive integer, got {card['hidden']!r}")
    if "members" in card and not (_is_int(card["members"]) and 1 <= card["members"] <= 64):
        problems.append(f"members must be an integer from 1 to 64, got {card['members']!r}")
    if "dropout" in card and not (_is_number(card["dropout"]) and 0 <= card["dropout"] < 1):
        problems.append(f"dropout must be a number in [0, 1), got {card['dropout']!r}")
    if "temperatures" in card:
        temps = card["temperatures"]
        if not isinstance(temps, dict) or not all(_is_number(t) and t > 0 for t in temps.values()):
            problems.append(f"temperatures must map names to positive numbers, got {temps!r}")
    for key in ("training", "metrics"):
        if key in card and not isinstance(card[key], dict):
            problems.append(f"{key} must be an object, got {type(card[key]).__name__}")
    for key in ("note", "created_at", "weights_sha256", "version"):
        if key in card and not isinstance(card[key], str):
            problems.append(f"{key} must be a string, got {card[key]!r}")
    if card.get("parent") is not None and not isinstance(card["parent"], str):
        problems.append(f"parent must be a version string or null, got {card['parent']!r}")

    if problems:
        raise RegistryError("invalid card: " + "; ".join(problems))
    return card


def check_compatible(card: dict, tensor_shapes: dict[str, tuple[int, ...]], expected: dict | None) -> None:
    """Raise RegistryError naming every difference between a head version and what the app runs.

    `expected` = {"text_encoder": {"id", "dim"}, "image_encoder": {...},
                  "tensor_shapes": {name: shape}, "labels": [...] (optional, default LABELS)}.
    Labels are always checked: heads trained on another class order would silently mislabel.
    """
    expected = expected or {}
    problems: list[str] = []

    want_labels = list(expected.get("labels", LABELS))
    if card.get("labels") != want_labels:
        problems.append(f"labels differ: file has {card.get('labels')}, app uses {want_labels}")

    for key in ("text_encoder", "image_encoder"):
        want = expected.get(key)
        if not want:
            continue
        have = card.get(key) or {}
        for field in ("id", "dim"):
            if field in want and have.get(field) != want[field]:
                problems.append(
                    f"{key}.{field} differs: file was trained on {have.get(field)!r}, app runs {want[field]!r}"
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


def _check_tensors(tensors: object) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict) or not tensors:
        raise RegistryError("weights must be a non-empty dict of name -> tensor")
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise RegistryError(f"weights entry {name!r} is not a named torch tensor")
        if tensor.dtype != torch.float32:
            raise RegistryError(f"tensor {name} is {tensor.dtype}; head weights must be float32")
    return tensors


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(value: object) -> object:
    # Trainers hand over numpy / torch scalars in metrics; store them as plain numbers.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _normalise_card(card: dict) -> dict:
    """A JSON round trip: what we validate is exactly what will be stored and read back."""
    try:
        return json.loads(json.dumps(card, default=_json_default))
    except (TypeError, ValueError) as error:
        raise RegistryError(f"card cannot be stored as JSON: {error}") from error


def _parse_weights(weights: bytes, name: str) -> dict[str, torch.Tensor]:
    # safetensors only: a pickle (or anything else) fails to parse here and is never executed.
    try:
        tensors = load_safetensors_bytes(weights)
    except Exception as error:  # SafetensorError is not a public, stable exception type
        raise RegistryError(f"{name}: weights are not a valid safetensors file ({error})") from error
    try:
        return _check_tensors(tensors)
    except RegistryError as error:
        raise RegistryError(f"{name}: {error}") from error
