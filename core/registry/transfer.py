"""Moving a head version between machines: a zip of its files out (``export_zip``) and an upload checked on
its way in (``read_zip``, ``check_upload``, ``identical_version``). ``HeadRegistry`` calls these; this module
knows nothing of the registry.

Uploads are untrusted: read in memory only (nothing is extracted), size-capped, parsed with safetensors and
json only, compared with the running encoders, and trusted with no path: an imported version names encoders
shipped with the app (``bundled:`` specs, a LoRA adapter under ``assets/models``) or carries its own adapter
in the zip (stored in its version folder). A card that points the engine at any other folder of the server is
refused before anything is stored."""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from core import config
from core.encoders import IMAGE_SPECS, TEXT_SPECS
from core.registry import weights
from core.registry.card import (
    ADAPTER_DIR,
    ADAPTER_FILES,
    CARD_FILE,
    MAX_ADAPTER_BYTES,
    MAX_ADAPTER_CONFIG_BYTES,
    MAX_CARD_BYTES,
    MAX_WEIGHTS_BYTES,
    MAX_ZIP_BYTES,
    VERSION_ADAPTER,
    WEIGHTS_FILE,
    HeadCard,
    RegistryError,
    check_compatible,
)
from core.registry.folders import read_weights_bytes

_ADAPTER_LIMITS = dict(zip(ADAPTER_FILES, (MAX_ADAPTER_CONFIG_BYTES, MAX_ADAPTER_BYTES)))


class DuplicateVersion(RegistryError):
    """An upload identical to a version the registry already holds; ``existing`` is that version's id."""

    def __init__(self, existing: str):
        super().__init__(f"this version is already here as version {existing} (same weights and card); "
                         "nothing was imported")
        self.existing = existing


@dataclass(frozen=True)
class Upload:
    """A checked upload, ready to store: its tensors, the card as it will be stored (no id, dates or hash of
    its own; ``imported_from`` the id it had), the adapter files it carries (``adapter/...`` -> bytes) and
    the sha256 of the weight bytes the registry will write."""

    tensors: dict[str, torch.Tensor]
    card: HeadCard
    adapter: dict[str, bytes]
    weights_sha256: str


# ----- which paths an upload may name ---------------------------------------------------------------------

def bundled_adapter(adapter: str) -> bool:
    """Whether a card's adapter names a LoRA adapter shipped with the app: a repo-relative folder directly
    under ``assets/models`` holding an adapter config (the shipped default's own)."""
    path = Path(adapter)
    if path.is_absolute() or ".." in path.parts:
        return False
    shipped = (config.ASSETS / "models").resolve()
    resolved = (config.REPO_ROOT / path).resolve()
    return resolved.parent == shipped and (resolved / ADAPTER_FILES[0]).is_file()


def untrusted_paths(card: HeadCard, carries_adapter: bool) -> list[str]:
    """What in an uploaded card would make the engine load files the upload did not bring: encoder specs
    that are not bundled (a Hugging Face name or a folder) and an adapter that is neither shipped nor carried."""
    problems = []
    text_spec = card.text_encoder.spec.split("+adapter:")[0]
    if text_spec not in TEXT_SPECS:
        problems.append(f"text_encoder.spec {card.text_encoder.spec!r} is not a bundled text encoder "
                        f"({', '.join(TEXT_SPECS)})")
    if card.image_encoder.spec not in IMAGE_SPECS:
        problems.append(f"image_encoder.spec {card.image_encoder.spec!r} is not a bundled image encoder "
                        f"({', '.join(IMAGE_SPECS)})")
    adapter = card.text_encoder.adapter
    if carries_adapter and not adapter:
        problems.append(f"the zip carries a text adapter ({ADAPTER_DIR}/) but its card names none")
    elif adapter and not carries_adapter and not bundled_adapter(adapter):
        problems.append(f"text_encoder.adapter {adapter!r} is neither shipped with the app nor carried in the "
                        f"zip ({ADAPTER_DIR}/{' + '.join(ADAPTER_FILES)})")
    return problems


def _check_adapter(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The carried adapter's files as ``adapter/<name>`` -> bytes, checked: both files, a LoRA config as a
    JSON object, floating-point tensors in safetensors (never a pickle)."""
    missing = [name for name in ADAPTER_FILES if name not in files]
    if missing:
        raise RegistryError(f"the zip's {ADAPTER_DIR}/ has no {', '.join(missing)}")
    try:
        adapter_config = json.loads(files[ADAPTER_FILES[0]].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"{ADAPTER_DIR}/{ADAPTER_FILES[0]} is not valid JSON ({error})") from error
    if not isinstance(adapter_config, dict) or str(adapter_config.get("peft_type", "")).upper() != "LORA":
        raise RegistryError(f"{ADAPTER_DIR}/{ADAPTER_FILES[0]} is not a LoRA adapter config")
    tensors = weights.parse_safetensors(files[ADAPTER_FILES[1]], f"{ADAPTER_DIR}/{ADAPTER_FILES[1]}")
    if not tensors or not all(t.is_floating_point() for t in tensors.values()):
        raise RegistryError(f"{ADAPTER_DIR}/{ADAPTER_FILES[1]} must hold floating-point tensors")
    return {f"{ADAPTER_DIR}/{name}": bytes(files[name]) for name in ADAPTER_FILES}


# ----- out ----------------------------------------------------------------------------------------------

def export_zip(folder: Path, card: HeadCard, name: str) -> bytes:
    """A zip of a version's weights and card, verified before it leaves; its text adapter goes along
    (``adapter/``) unless it is one shipped with the app, so the zip can be imported anywhere."""
    data = read_weights_bytes(folder, card, name)
    adapter = card.text_encoder.adapter
    carried = {}
    if adapter and not bundled_adapter(adapter):
        source = card.adapter_dir()
        try:
            carried = {file: (source / file).read_bytes() for file in ADAPTER_FILES}
        except OSError as error:
            raise RegistryError(f"head version {name}: its text adapter {source} cannot be read "
                                f"({error.strerror or error})") from error
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(WEIGHTS_FILE, data)
        archive.writestr(CARD_FILE, (folder / CARD_FILE).read_bytes())
        for file, content in carried.items():
            archive.writestr(f"{ADAPTER_DIR}/{file}", content)
    return buffer.getvalue()


# ----- in -----------------------------------------------------------------------------------------------

def read_zip(data: bytes) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(weights, card, adapter files by name) from a zip made by ``export_zip``; only those files are read,
    in memory, each within its size limit."""
    if len(data) > MAX_ZIP_BYTES:
        raise RegistryError(f"zip is {len(data):,} bytes; the limit is {MAX_ZIP_BYTES:,}")
    limits = {WEIGHTS_FILE: MAX_WEIGHTS_BYTES, CARD_FILE: MAX_CARD_BYTES,
              **{f"{ADAPTER_DIR}/{name}": limit for name, limit in _ADAPTER_LIMITS.items()}}
    found: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            for name, limit in limits.items():
                if name not in names:
                    if name in (WEIGHTS_FILE, CARD_FILE):
                        raise RegistryError(f"zip has no {name} at its top level")
                    continue
                info = archive.getinfo(name)
                if info.file_size > limit:
                    raise RegistryError(f"{name} in the zip is {info.file_size:,} bytes; the limit is {limit:,}")
                with archive.open(info) as member:
                    content = member.read(limit + 1)  # never trust the header's size alone
                if len(content) > limit:
                    raise RegistryError(f"{name} in the zip is over the {limit:,} byte limit")
                found[name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as error:
        raise RegistryError(f"not a readable zip file ({error})") from error
    adapter = {name.removeprefix(f"{ADAPTER_DIR}/"): content for name, content in found.items()
               if name.startswith(f"{ADAPTER_DIR}/")}
    return found[WEIGHTS_FILE], found[CARD_FILE], adapter


def check_upload(weight_bytes: bytes, card_json: bytes | str, *, adapter: Mapping[str, bytes] | None = None,
                 expected: dict | None = None) -> Upload:
    """Check an uploaded version (weights, card, optional adapter files by name) and give it back ready to
    store; RegistryError saying what is wrong. ``expected``: what it must fit (``check_compatible``)."""
    if not isinstance(weight_bytes, (bytes, bytearray)) or not isinstance(card_json, (bytes, bytearray, str)):
        raise RegistryError("upload must be bytes")
    if len(weight_bytes) > MAX_WEIGHTS_BYTES:
        raise RegistryError(f"{WEIGHTS_FILE} is {len(weight_bytes):,} bytes; the limit is {MAX_WEIGHTS_BYTES:,}")
    if len(card_json) > MAX_CARD_BYTES:
        raise RegistryError(f"{CARD_FILE} is {len(card_json):,} bytes; the limit is {MAX_CARD_BYTES:,}")
    for name, limit in _ADAPTER_LIMITS.items():
        if len((adapter or {}).get(name, b"")) > limit:
            raise RegistryError(f"{ADAPTER_DIR}/{name} is over the {limit:,} byte limit")
    try:
        text = card_json.decode("utf-8") if isinstance(card_json, (bytes, bytearray)) else card_json
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"uploaded {CARD_FILE} is not valid JSON ({error})") from error
    card = HeadCard.from_dict(data)
    weight_bytes = bytes(weight_bytes)
    if card.weights_sha256 and card.weights_sha256 != weights.sha256(weight_bytes):
        raise RegistryError(f"uploaded {WEIGHTS_FILE} does not match the sha256 in {CARD_FILE} "
                            "(corrupt, or from another version?)")
    tensors = weights.parse_weights(weight_bytes, f"uploaded {WEIGHTS_FILE}")
    check_compatible(card, {name: tuple(t.shape) for name, t in tensors.items()}, expected)
    problems = untrusted_paths(card, carries_adapter=bool(adapter))
    if problems:
        raise RegistryError("not imported: a version from elsewhere must name encoders shipped with this app or "
                            "carry its own adapter, and may point at no folder of this server: " + "; ".join(problems))
    carried = _check_adapter(adapter) if adapter else {}

    # The registry assigns a fresh id, time and hash; remember where the version came from.
    stored = {k: v for k, v in card.to_dict().items() if k not in ("version", "created_at", "weights_sha256", "builtin")}
    stored["imported_from"] = card.version
    if carried:
        stored["text_encoder"] = {**stored["text_encoder"], "adapter": VERSION_ADAPTER}
    return Upload(tensors, HeadCard.from_dict(stored), carried, weights.sha256(weights.weights_bytes(tensors)))


# Fields that name or date a copy of a version rather than describe it: the registry sets them on
# every save or import, so two copies of one version differ only there.
_COPY_FIELDS = ("version", "created_at", "weights_sha256", "imported_from", "builtin")


def _card_content(card: Mapping) -> dict:
    """What a card says about its version, without the fields of ``_COPY_FIELDS``; note and parent as
    ``save`` stores them when absent."""
    content = {k: v for k, v in card.items() if k not in _COPY_FIELDS}
    content.setdefault("note", "")
    content.setdefault("parent", None)
    return content


def identical_version(listing: list[dict], weights_sha256: str, card: HeadCard) -> str | None:
    """The id of a version in ``listing`` (``HeadRegistry.versions()``) with these weights (sha256 of the
    bytes the registry stores) and the same card apart from its id and dates; None when there is none."""
    content = _card_content(card.to_dict())
    for existing in listing:
        if existing.get("weights_sha256") == weights_sha256 and _card_content(existing) == content:
            return existing["version"]
    return None
