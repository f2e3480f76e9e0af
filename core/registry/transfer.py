"""Moving a head version between machines: a zip of its two files out (``export_zip``), and an upload
in (``import_version``, ``import_zip``). Uploads are untrusted: read in memory only, size-capped,
parsed with safetensors and json only, and compared with the running encoders before they are kept.
An upload identical to a version already in the registry (``identical_version``) is refused, so
importing the same zip twice does not make a second copy."""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import TYPE_CHECKING

from core.access import IMPORT, Actor, require
from core.registry.card import (
    CARD_FILE,
    MAX_CARD_BYTES,
    MAX_WEIGHTS_BYTES,
    MAX_ZIP_BYTES,
    WEIGHTS_FILE,
    RegistryError,
    _normalise_card,
    _parse_weights,
    _sha256,
    check_compatible,
    validate_card,
)
from core.registry.storage import _read_weights_bytes, _serialise

if TYPE_CHECKING:
    from core.registry.storage import HeadRegistry


def export_zip(registry: HeadRegistry, version: str) -> bytes:
    """A zip of weights.safetensors + card.json, verified before it leaves."""
    folder, _ = registry._folder(version)
    card = registry.card(version)
    weights = _read_weights_bytes(folder, card, version)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(WEIGHTS_FILE, weights)
        archive.writestr(CARD_FILE, (folder / CARD_FILE).read_bytes())
    return buffer.getvalue()

class DuplicateVersion(RegistryError):
    """An upload identical to a version the registry already holds; ``existing`` is that version's id."""

    def __init__(self, existing: str):
        super().__init__(f"this version is already here as version {existing} (same weights and card); "
                         "nothing was imported")
        self.existing = existing


# Fields that name or date a copy of a version rather than describe it: the registry sets them on
# every save or import, so two copies of one version differ only there.
_COPY_FIELDS = ("version", "created_at", "weights_sha256", "imported_from", "builtin")


def _card_content(card: dict) -> dict:
    """What a card says about its version, without the fields of ``_COPY_FIELDS``; note and parent as
    ``save`` stores them when absent."""
    content = {k: v for k, v in _normalise_card(card).items() if k not in _COPY_FIELDS}
    content.setdefault("note", "")
    content.setdefault("parent", None)
    return content


def identical_version(registry: HeadRegistry, weights_sha256: str, card: dict) -> str | None:
    """The id of a version in ``registry`` (the builtin included) with these weights (sha256 of the
    bytes the registry stores) and the same card apart from its id and dates; None when there is none."""
    content = _card_content(card)
    for existing in registry.versions():
        if existing.get("weights_sha256") == weights_sha256 and _card_content(existing) == content:
            return existing["version"]
    return None


def import_version(registry: HeadRegistry, weights: bytes, card_json: bytes, *, expected: dict | None = None,
                   actor: Actor | None = None) -> str:
    """Validate an uploaded weights + card pair and store it as a new version (not activated).
    Operators only (``AccessDenied`` for a viewer); DuplicateVersion (a RegistryError) when the registry
    already holds an identical version. The import is recorded with who made it."""
    actor = require(actor or registry.default_actor, IMPORT)
    if not isinstance(weights, (bytes, bytearray)) or not isinstance(card_json, (bytes, bytearray, str)):
        raise RegistryError("upload must be bytes")
    if len(weights) > MAX_WEIGHTS_BYTES:
        raise RegistryError(f"{WEIGHTS_FILE} is {len(weights):,} bytes; the limit is {MAX_WEIGHTS_BYTES:,}")
    if len(card_json) > MAX_CARD_BYTES:
        raise RegistryError(f"{CARD_FILE} is {len(card_json):,} bytes; the limit is {MAX_CARD_BYTES:,}")
    try:
        text = card_json.decode("utf-8") if isinstance(card_json, (bytes, bytearray)) else card_json
        card = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"uploaded {CARD_FILE} is not valid JSON ({error})") from error
    card = validate_card(card)
    weights = bytes(weights)
    claimed = card.get("weights_sha256")
    if claimed and claimed != _sha256(weights):
        raise RegistryError(f"uploaded {WEIGHTS_FILE} does not match the sha256 in {CARD_FILE} (corrupt, or from another version?)")
    tensors = _parse_weights(weights, f"uploaded {WEIGHTS_FILE}")
    check_compatible(card, {name: tuple(t.shape) for name, t in tensors.items()}, expected)

    # The registry assigns a fresh id and time; remember where the file came from.
    imported_from = card.get("version")
    card = {k: v for k, v in card.items() if k not in ("version", "created_at", "weights_sha256")}
    card["imported_from"] = imported_from
    stored_sha256 = _serialise(tensors, {})[2]["weights_sha256"]  # the bytes save() would write
    existing = identical_version(registry, stored_sha256, card)
    if existing is not None:
        raise DuplicateVersion(existing)
    version = registry.save(tensors, card)
    registry.record("imported", version, actor)
    return version


def import_zip(registry: HeadRegistry, data: bytes, *, expected: dict | None = None, actor: Actor | None = None) -> str:
    """Import a zip made by export_zip (operators only). Reads the two files in memory; nothing is extracted."""
    actor = require(actor or registry.default_actor, IMPORT)
    if len(data) > MAX_ZIP_BYTES:
        raise RegistryError(f"zip is {len(data):,} bytes; the limit is {MAX_ZIP_BYTES:,}")
    limits = {WEIGHTS_FILE: MAX_WEIGHTS_BYTES, CARD_FILE: MAX_CARD_BYTES}
    found: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name, limit in limits.items():
                try:
                    info = archive.getinfo(name)
                except KeyError:
                    raise RegistryError(f"zip has no {name} at its top level") from None
                if info.file_size > limit:
                    raise RegistryError(f"{name} in the zip is {info.file_size:,} bytes; the limit is {limit:,}")
                with archive.open(info) as member:
                    content = member.read(limit + 1)  # never trust the header's size alone
                if len(content) > limit:
                    raise RegistryError(f"{name} in the zip is over the {limit:,} byte limit")
                found[name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as error:
        raise RegistryError(f"not a readable zip file ({error})") from error
    return import_version(registry, found[WEIGHTS_FILE], found[CARD_FILE], expected=expected, actor=actor)
