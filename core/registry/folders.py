"""One head version folder on disk: ``weights.safetensors`` + ``card.json`` (+ ``adapter/`` when the version
keeps its own LoRA text adapter), written atomically (a temp folder, then one rename) and read back
verified (JSON, card fields, sha256 of the weights) before anything is used."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from core.registry import weights
from core.registry.card import (
    ADAPTER_DIR,
    ADAPTER_FILES,
    CARD_FILE,
    VERSION_ADAPTER,
    WEIGHTS_FILE,
    HeadCard,
    RegistryError,
    json_default,
)

TEMP_PREFIX = ".tmp-"  # temp folders start with a dot: never a valid version, never listed


class RegistryUnwritable(RegistryError, OSError):
    """The registry's folder cannot be written (read-only, full disk, file size limit). Nothing was
    changed: every write goes to a temp file or folder first and is renamed into place only when complete."""


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def unwritable(what: str, where: Path, error: OSError) -> RegistryUnwritable:
    """The RegistryUnwritable for an OSError met while trying to ``what`` in ``where``, in plain words."""
    if error.errno in _FULL:
        why = "the disk is full (or a file size limit was reached)"
    elif error.errno in _READ_ONLY:
        why = "the folder is read-only"
    else:
        why = error.strerror or str(error)
    return RegistryUnwritable(f"could not {what}: {why} ({where}); nothing was changed")


# ----- bytes to files ---------------------------------------------------------------------------------

def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` and fsync, so that "renamed into place" also means "on disk" after a power cut."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the filesystem allows it)."""
    with contextlib.suppress(OSError):  # not every filesystem lets you fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_into_temp(parent: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (relative name -> bytes) into a fresh temp folder under `parent`; remove it again on
    any failure."""
    temp = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    temp.mkdir(parents=True)
    try:
        for name, data in files.items():
            (temp / name).parent.mkdir(parents=True, exist_ok=True)
            write_file(temp / name, data)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


# ----- a version's files ------------------------------------------------------------------------------

def adapter_files(card: HeadCard) -> dict[str, bytes]:
    """The files of the LoRA adapter a card keeps in its version folder (``adapter/...`` -> bytes), to go
    with the version wherever it is stored; empty for a card without one."""
    if card.text_encoder.adapter != VERSION_ADAPTER:
        return {}
    source = card.adapter_dir()
    try:
        return {f"{ADAPTER_DIR}/{name}": (source / name).read_bytes() for name in ADAPTER_FILES}
    except OSError as error:
        raise RegistryError(f"the card's text adapter in {source} cannot be read: {error}") from error


def version_files(tensors: dict[str, torch.Tensor], card: HeadCard,
                  adapter: Mapping[str, bytes] | None = None) -> tuple[dict[str, bytes], HeadCard]:
    """(relative name -> bytes, the card as stored, with ``weights_sha256`` of those exact weight bytes).
    ``adapter``: the adapter's files when they do not come from the card's own version folder."""
    weight_bytes = weights.weights_bytes(tensors)
    card = card.replace(weights_sha256=weights.sha256(weight_bytes))
    card_bytes = json.dumps(card.to_dict(), indent=2, default=json_default).encode("utf-8")
    return {WEIGHTS_FILE: weight_bytes, CARD_FILE: card_bytes, **(adapter_files(card) if adapter is None else adapter)}, card


def write_version_folder(folder: Path, tensors: dict[str, torch.Tensor], card: HeadCard | Mapping) -> None:
    """Write weights + card into `folder` atomically (also used for assets/models/default).

    The card gets `weights_sha256` filled in; other fields are kept as given. If `folder`
    already exists it is replaced: the old one is renamed aside first, so readers see either
    the old or the new complete folder (or, for an instant, none), never a half-written one.
    """
    folder = Path(folder)
    files, _ = version_files(tensors, HeadCard.coerce(card))
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = write_into_temp(folder.parent, files)
    old = None
    if folder.exists():
        old = folder.parent / f"{TEMP_PREFIX}old-{secrets.token_hex(8)}"
        os.rename(folder, old)
    try:
        os.rename(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None:
            os.rename(old, folder)
        raise
    fsync_dir(folder.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_card_file(folder: Path, name: str) -> HeadCard:
    """The checked card of the version folder ``folder`` (called ``name`` in messages)."""
    try:
        raw = (folder / CARD_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {CARD_FILE}: {error}") from error
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"head version {name}: {CARD_FILE} is not valid JSON ({error})") from error
    try:
        return HeadCard.from_dict(data, folder=folder)
    except RegistryError as error:
        raise RegistryError(f"head version {name}: {error}") from error


def read_weights_bytes(folder: Path, card: HeadCard, name: str) -> bytes:
    """Raw weights bytes, checked against the card's sha256 (catches corruption and tampering); the
    adapter a version keeps must be there too."""
    try:
        data = (folder / WEIGHTS_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {WEIGHTS_FILE}: {error}") from error
    if not card.weights_sha256:
        raise RegistryError(f"head version {name}: card has no weights_sha256, cannot verify weights")
    if weights.sha256(data) != card.weights_sha256:
        raise RegistryError(f"head version {name}: {WEIGHTS_FILE} does not match the sha256 in its card (corrupt?)")
    if card.text_encoder.adapter == VERSION_ADAPTER:
        missing = [file for file in ADAPTER_FILES if not (folder / ADAPTER_DIR / file).is_file()]
        if missing:
            raise RegistryError(f"head version {name}: its text adapter is missing {', '.join(missing)} "
                                f"in {ADAPTER_DIR}/")
    return data


def read_version_folder(folder: Path) -> tuple[dict[str, torch.Tensor], HeadCard]:
    """Read and verify one version folder: (tensors, card). RegistryError if anything is off."""
    folder = Path(folder)
    name = folder.name
    card = read_card_file(folder, name)
    data = read_weights_bytes(folder, card, name)
    return weights.parse_weights(data, f"head version {name}"), card
