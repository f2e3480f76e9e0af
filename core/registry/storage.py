"""Head versions on disk: each version a folder written atomically (temp folder, then rename), and the
``HeadRegistry`` that lists, saves, activates and rolls back versions under one root, with the active
pointer in ``active.json`` replaced under a lock. Zip export and import live in ``transfer``."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import save as save_safetensors_bytes

from core import config
from core.registry.card import (
    _VERSION_RE,
    CARD_FILE,
    WEIGHTS_FILE,
    RegistryError,
    _check_tensors,
    _json_default,
    _normalise_card,
    _parse_weights,
    _sha256,
    check_version_id,
    validate_card,
)

log = logging.getLogger(__name__)

BUILTIN_ALIAS = "builtin"  # always names the shipped default, whatever its card calls it
MAX_HISTORY = 100  # enough rollbacks for any human; keeps active.json small
_TEMP_PREFIX = ".tmp-"  # temp folders start with a dot: never a valid version, never listed



def _serialise(tensors: dict[str, torch.Tensor], card: dict) -> tuple[bytes, bytes, dict]:
    """Weights bytes, card bytes and the final card (with weights_sha256 of those exact bytes)."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in _check_tensors(tensors).items()}
    weights = save_safetensors_bytes(tensors)
    card = {**card, "weights_sha256": _sha256(weights)}
    card_bytes = json.dumps(card, indent=2, default=_json_default).encode("utf-8")
    return weights, card_bytes, card


def _write_file(path: Path, data: bytes) -> None:
    # fsync so that "renamed into place" also means "on disk" after a power cut.
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets you fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_into_temp(parent: Path, weights: bytes, card_bytes: bytes) -> Path:
    """Write both files into a fresh temp folder under `parent`; remove it again on any failure."""
    temp = parent / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
    temp.mkdir(parents=True)
    try:
        _write_file(temp / WEIGHTS_FILE, weights)
        _write_file(temp / CARD_FILE, card_bytes)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


def write_version_folder(folder: Path, tensors: dict[str, torch.Tensor], card: dict) -> None:
    """Write weights + card into `folder` atomically (also used for assets/models/default).

    The card gets `weights_sha256` filled in; other fields are kept as given. If `folder`
    already exists it is replaced: the old one is renamed aside first, so readers see either
    the old or the new complete folder (or, for an instant, none), never a half-written one.
    """
    folder = Path(folder)
    card = validate_card(_normalise_card(card))
    weights, card_bytes, _ = _serialise(tensors, card)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_into_temp(folder.parent, weights, card_bytes)
    old = None
    if folder.exists():
        old = folder.parent / f"{_TEMP_PREFIX}old-{secrets.token_hex(8)}"
        os.rename(folder, old)
    try:
        os.rename(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None:
            os.rename(old, folder)
        raise
    _fsync_dir(folder.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_card_file(folder: Path, name: str) -> dict:
    try:
        raw = (folder / CARD_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {CARD_FILE}: {error}") from error
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RegistryError(f"head version {name}: {CARD_FILE} is not valid JSON ({error})") from error
    try:
        return validate_card(card)
    except RegistryError as error:
        raise RegistryError(f"head version {name}: {error}") from error


def _read_weights_bytes(folder: Path, card: dict, name: str) -> bytes:
    """Raw weights bytes, checked against the card's sha256 (catches corruption and tampering)."""
    try:
        weights = (folder / WEIGHTS_FILE).read_bytes()
    except OSError as error:
        raise RegistryError(f"head version {name}: cannot read {WEIGHTS_FILE}: {error}") from error
    if not card.get("weights_sha256"):
        raise RegistryError(f"head version {name}: card has no weights_sha256, cannot verify weights")
    if _sha256(weights) != card["weights_sha256"]:
        raise RegistryError(f"head version {name}: {WEIGHTS_FILE} does not match the sha256 in its card (corrupt?)")
    return weights


def read_version_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify one version folder: (tensors, card). RegistryError if anything is off."""
    folder = Path(folder)
    name = folder.name
    card = _read_card_file(folder, name)
    weights = _read_weights_bytes(folder, card, name)
    return _parse_weights(weights, f"head version {name}"), card


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_version_id(created: datetime) -> str:
    # Time first so ids sort by age; a random tail so two saves in one second never clash.
    return created.strftime("v%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def open_registry(builtin: Path | None = None) -> "HeadRegistry":
    """The user's registry (under MMSA_HOME) with the shipped default, or MMSA_HEAD_DIR, as builtin.
    The app and the CLI both open it here, so they serve the same versions."""
    return HeadRegistry(config.registry_root(), builtin=builtin or config.default_head_dir())


class HeadRegistry:
    """Head versions on disk plus the pointer to the active one. Safe across processes."""

    def __init__(self, root: Path, *, builtin: Path | None = None):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.active_file = self.root / "active.json"
        self.lock_file = self.root / ".lock"
        self.builtin = Path(builtin) if builtin is not None else None
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    # ---- naming

    def _builtin_id(self) -> str | None:
        """The builtin's id: its card's version if that is a valid id, else 'builtin'."""
        if self.builtin is None or not (self.builtin / CARD_FILE).is_file():
            return None
        try:
            version = json.loads((self.builtin / CARD_FILE).read_text("utf-8")).get("version")
            return check_version_id(version)
        except (OSError, ValueError, AttributeError):
            return BUILTIN_ALIAS

    def _folder(self, version: str) -> tuple[Path, bool]:
        """(folder, is_builtin) for a version id; RegistryError if there is no such version."""
        check_version_id(version)
        saved = self.versions_dir / version
        if version != BUILTIN_ALIAS and saved.is_dir():
            return saved, False
        builtin_id = self._builtin_id()
        if builtin_id is not None and version in (BUILTIN_ALIAS, builtin_id):
            return self.builtin, True
        raise RegistryError(f"no head version {version!r} in {self.root}")

    # ---- reading

    def card(self, version: str) -> dict:
        """The validated card of a version (the builtin's marked ``builtin``); RegistryError if missing or corrupt."""
        folder, is_builtin = self._folder(version)
        card = _read_card_file(folder, version)
        if is_builtin:
            return {**card, "version": self._builtin_id(), "builtin": True}
        if card.get("version") != version:
            raise RegistryError(f"head version {version}: card says version {card.get('version')!r} (corrupt?)")
        return card

    def load(self, version: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and card of a version, weights verified against the card's sha256."""
        folder, _ = self._folder(version)
        card = self.card(version)
        weights = _read_weights_bytes(folder, card, version)
        return _parse_weights(weights, f"head version {version}"), card

    def versions(self) -> list[dict]:
        """Cards of all readable versions, newest first, builtin last. Broken folders are skipped."""
        cards = []
        for entry in self.versions_dir.iterdir():
            if not entry.is_dir() or not _VERSION_RE.fullmatch(entry.name):
                continue  # temp folders (".tmp-...") and stray files
            try:
                cards.append(self.card(entry.name))
            except RegistryError as error:
                log.warning("skipping unreadable head version: %s", error)
        cards.sort(key=lambda c: (c.get("created_at", ""), c["version"]), reverse=True)
        if self._builtin_id() is not None:
            try:
                cards.append(self.card(BUILTIN_ALIAS))
            except RegistryError as error:
                log.warning("skipping unreadable builtin head: %s", error)
        return cards

    # ---- writing a version

    def save(self, tensors: dict[str, torch.Tensor], card: dict, *, note: str = "", parent: str | None = None) -> str:
        """Store a new version (not activated) and return its id."""
        if parent is not None:
            check_version_id(parent)
        if not isinstance(note, str):
            raise RegistryError(f"note must be a string, got {type(note).__name__}")
        card = _normalise_card(card)
        created = _now()
        card["created_at"] = created.isoformat(timespec="microseconds")
        if note:
            card["note"] = note
        card.setdefault("note", "")
        if parent is not None:
            card["parent"] = parent
        card.setdefault("parent", None)
        card["version"] = _new_version_id(created)  # placeholder so the card validates as a whole
        validate_card(card)

        for _ in range(5):  # a clash needs two saves in one second with the same 16 random bits
            version = _new_version_id(created)
            card["version"] = version
            weights, card_bytes, _ = _serialise(tensors, card)
            temp = _write_into_temp(self.versions_dir, weights, card_bytes)
            try:
                # rename() refuses a non-empty existing target, so a clash cannot overwrite.
                os.rename(temp, self.versions_dir / version)
            except OSError:
                shutil.rmtree(temp, ignore_errors=True)
                if (self.versions_dir / version).exists():
                    continue
                raise
            _fsync_dir(self.versions_dir)
            return version
        raise RegistryError("could not find a free version id; try again")

    # ---- the active pointer

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per open file, so this serialises threads, processes and app sessions alike.
        with open(self.lock_file, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> dict:
        if not self.active_file.exists():
            return {"active": None, "history": []}
        try:
            state = json.loads(self.active_file.read_text("utf-8"))
            if not isinstance(state, dict) or not isinstance(state.get("history", []), list):
                raise ValueError("expected {'active': ..., 'history': [...]}")
        except (OSError, ValueError) as error:
            raise RegistryError(f"{self.active_file} is unreadable ({error}); re-activate a version") from error
        return {"active": state.get("active"), "history": list(state.get("history", []))}

    def _write_state(self, state: dict) -> None:
        state = {"active": state["active"], "history": state["history"][-MAX_HISTORY:]}
        temp = self.root / f"{_TEMP_PREFIX}active-{secrets.token_hex(8)}.json"
        try:
            _write_file(temp, json.dumps(state, indent=2).encode("utf-8"))
            os.replace(temp, self.active_file)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _resolve(self, stored: str | None) -> str | None:
        # active.json stores "builtin" for the shipped head so a re-shipped default stays active.
        if stored == BUILTIN_ALIAS:
            return self._builtin_id()
        return stored

    def active_version(self) -> str:
        """The active version id; the builtin when nothing was activated."""
        active = self._resolve(self._read_state()["active"])
        if active is None:
            active = self._builtin_id()
        if active is None:
            raise RegistryError("no head version is active and there is no builtin default; train or import one")
        return active

    def activate(self, version: str) -> None:
        """Make `version` active; the previous active one goes onto the rollback history."""
        folder, is_builtin = self._folder(version)
        self.load(version)  # refuse to activate a corrupt version: fail now, not at prediction time
        stored = BUILTIN_ALIAS if is_builtin else version
        with self._locked():
            state = self._read_state()
            current = state["active"]
            if current is None and self._builtin_id() is not None:
                current = BUILTIN_ALIAS  # the implicit default is a real place to roll back to
            if current == stored:
                return
            if current is not None:
                state["history"].append(current)
            state["active"] = stored
            self._write_state(state)

    def can_roll_back(self) -> bool:
        """True when an earlier active version is remembered (what ``rollback`` would return to)."""
        return bool(self._read_state()["history"])

    def rollback(self) -> str:
        """Re-activate the previous active version and return it."""
        with self._locked():
            state = self._read_state()
            if not state["history"]:
                raise RegistryError("nothing to roll back to: no earlier active head version")
            # Popping (not pushing the current one) lets repeated rollbacks walk further back.
            state["active"] = state["history"].pop()
            self._write_state(state)
        return self._resolve(state["active"]) or BUILTIN_ALIAS

    # ---- download / upload (core.registry.transfer)

    def export_zip(self, version: str) -> bytes:
        """A zip of weights.safetensors + card.json, verified before it leaves."""
        from core.registry.transfer import export_zip
        return export_zip(self, version)

    def import_version(self, weights: bytes, card_json: bytes, *, expected: dict | None = None) -> str:
        """Validate an uploaded weights + card pair and store it as a new version (not activated);
        returns the new version id."""
        from core.registry.transfer import import_version
        return import_version(self, weights, card_json, expected=expected)

    def import_zip(self, data: bytes, *, expected: dict | None = None) -> str:
        """Import a zip made by export_zip (read in memory, nothing extracted); returns the new id."""
        from core.registry.transfer import import_zip
        return import_zip(self, data, expected=expected)
