"""The version store: ``HeadRegistry`` lists, saves, activates, rolls back, deletes, exports and imports head
versions under one root. Each version is a folder (``folders``: written atomically, read back verified);
which one is active and who changed what is the record in ``active.json`` (``record``); zips in and out are
``transfer``'s.

Damage is expected, not fatal: a version whose files or card are damaged is listed with the reason and
cannot be activated; an active pointer that names a missing or damaged version, or an unreadable
``active.json``, falls back to the shipped default with a warning. What changes what everyone is served
(activate, roll back, import, delete) needs an operator (``core.access``) and is recorded with who and
when in the record's ``events``."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import torch

from core import config
from core.access import ACTIVATE, DELETE, IMPORT, ROLL_BACK, Actor, local_operator, require
from core.registry import folders, transfer, weights
from core.registry.card import (
    ADAPTER_DIR,
    ADAPTER_FILES,
    CARD_FILE,
    VERSION_RE,
    WEIGHTS_FILE,
    HeadCard,
    RegistryError,
    check_version_id,
)
from core.registry.folders import RegistryUnwritable, unwritable
from core.registry.record import ActiveRecord, now

log = logging.getLogger(__name__)

BUILTIN_ALIAS = "builtin"  # always names the shipped default, whatever its card calls it
_LOCAL = object()  # "the machine's user": the default actor of a registry opened by the CLI or a script


def _time_from_id(version: str) -> str:
    """The save time a registry-made id carries, as ISO text ('' for other ids): sorts a version whose
    card is unreadable where it belongs."""
    try:
        return datetime.strptime(version[:16], "v%Y%m%d-%H%M%S").replace(tzinfo=UTC).isoformat(timespec="microseconds")
    except ValueError:
        return ""


def _new_version_id(created: datetime) -> str:
    # Time first so ids sort by age; a random tail so two saves in one second never clash.
    return created.strftime("v%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def open_registry(builtin: Path | None = None, *, actor: Actor | None = _LOCAL) -> HeadRegistry:  # type: ignore[assignment]
    """The user's registry (under MMSA_HOME) with the shipped default, or MMSA_HEAD_DIR, as builtin.
    The app and the CLI both open it here, so they serve the same versions. ``actor`` acts when a change
    names no one: the machine's user by default; None makes every change name its actor."""
    return HeadRegistry(config.registry_root(), builtin=builtin or config.default_head_dir(), actor=actor)


class HeadRegistry:
    """Head versions on disk plus the pointer to the active one. Safe across processes."""

    def __init__(self, root: Path, *, builtin: Path | None = None, actor: Actor | None = _LOCAL):  # type: ignore[assignment]
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.record = ActiveRecord(self.root)
        self.active_file = self.record.path
        self.lock_file = self.record.lock_file
        self.builtin = Path(builtin) if builtin is not None else None
        # Who acts when a caller names no one: the machine's user for the CLI and scripts; None (refuse
        # every change) for the app, whose pages must say which browser tab's user is acting.
        self.default_actor = local_operator() if actor is _LOCAL else actor
        self._checked: dict[str, tuple[tuple, str | None]] = {}  # folder -> (file stats, damage) cache
        self._warned: set[str] = set()
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only home still lists the builtin; writes say why they fail
            log.warning("head registry folder %s cannot be created: %s", self.versions_dir, error)

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

    def card(self, version: str) -> HeadCard:
        """The checked card of a version (the builtin's marked ``builtin``); RegistryError if missing or corrupt."""
        folder, is_builtin = self._folder(version)
        card = folders.read_card_file(folder, version)
        if is_builtin:
            return card.replace(version=self._builtin_id(), builtin=True)
        if card.version != version:
            raise RegistryError(f"head version {version}: card says version {card.version!r} (corrupt?)")
        return card

    def load(self, version: str) -> tuple[dict[str, torch.Tensor], HeadCard]:
        """Tensors and card of a version, weights verified against the card's sha256."""
        folder, _ = self._folder(version)
        card = self.card(version)
        data = folders.read_weights_bytes(folder, card, version)
        return weights.parse_weights(data, f"head version {version}"), card

    # ---- damage

    def _stats(self, folder: Path) -> tuple:
        out = []
        for file in (CARD_FILE, WEIGHTS_FILE, *(f"{ADAPTER_DIR}/{name}" for name in ADAPTER_FILES)):
            try:
                info = (folder / file).stat()
                out.append((info.st_size, info.st_mtime_ns, info.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def damage(self, version: str) -> str | None:
        """Why a version cannot be used (unreadable or invalid card, weights missing, truncated or not
        matching the card's sha256, its own adapter missing), or None when it is whole. Versions never change
        once saved, so the check is redone only when a file's size, time or inode changes."""
        try:
            folder, _ = self._folder(version)
        except RegistryError as error:
            return str(error)
        stats = self._stats(folder)
        cached = self._checked.get(str(folder))
        if cached is not None and cached[0] == stats:
            return cached[1]
        try:
            self.load(version)
            problem = None
        except RegistryError as error:
            problem = str(error).removeprefix(f"head version {version}: ")
        self._checked[str(folder)] = (stats, problem)
        return problem

    def _damaged_entry(self, name: str, folder: Path, problem: str, is_builtin: bool = False) -> dict:
        """What can still be said about a damaged version (its dates and note, if its card reads), plus why."""
        entry: dict = {}
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            card = json.loads((folder / CARD_FILE).read_text("utf-8"))
            if isinstance(card, dict):
                entry = {k: card[k] for k in ("created_at", "note", "parent") if isinstance(card.get(k), str)}
        entry.update({"version": name, "damaged": problem})
        if is_builtin:
            entry["builtin"] = True
        return entry

    def versions(self) -> list[dict]:
        """Rows for a listing, newest first, builtin last: each whole version's card as a dict
        (``HeadCard.to_dict``); a damaged version as ``{"version", "damaged": reason, ...}`` (whatever its
        card still says), never raised."""
        cards = []
        try:
            entries = list(self.versions_dir.iterdir())
        except OSError:
            entries = []
        for entry in entries:
            if not entry.is_dir() or not VERSION_RE.fullmatch(entry.name) or entry.name == BUILTIN_ALIAS:
                continue  # temp folders (".tmp-...") and stray files
            problem = self.damage(entry.name)
            if problem is None:
                try:
                    cards.append(self.card(entry.name).to_dict())
                    continue
                except RegistryError as error:  # changed between the check and now
                    problem = str(error)
            cards.append(self._damaged_entry(entry.name, entry, problem))
        cards.sort(key=lambda c: (c.get("created_at") or _time_from_id(c["version"]), c["version"]), reverse=True)
        builtin_id = self._builtin_id()
        if builtin_id is not None:
            problem = self.damage(BUILTIN_ALIAS)
            try:
                if problem is not None:
                    raise RegistryError(problem)
                cards.append(self.card(BUILTIN_ALIAS).to_dict())
            except RegistryError as error:
                cards.append(self._damaged_entry(builtin_id, self.builtin, str(error), is_builtin=True))
        return cards

    # ---- writing a version

    def save(self, tensors: dict[str, torch.Tensor], card: HeadCard | Mapping, *, note: str = "",
             parent: str | None = None, actor: Actor | None = None) -> str:
        """Store a new version (not activated) and return its id. The registry gives it its id, date and
        weights hash (a card's own are replaced); a text adapter kept in the card's version folder is copied
        along. Anyone may save: a saved version is listed, but nobody is served it until an operator
        activates it. RegistryUnwritable on a read-only or full disk, with nothing half-written left behind."""
        if parent is not None:
            check_version_id(parent)
        if not isinstance(note, str):
            raise RegistryError(f"note must be a string, got {type(note).__name__}")
        source = card.folder if isinstance(card, HeadCard) else None
        data = card.to_dict() if isinstance(card, HeadCard) else dict(card)
        data.pop("builtin", None)  # a saved copy of the shipped default is not the shipped default
        created = now()
        data["created_at"] = created.isoformat(timespec="microseconds")
        if note:
            data["note"] = note
        data.setdefault("note", "")
        if parent is not None:
            data["parent"] = parent
        data.setdefault("parent", None)
        data["version"] = _new_version_id(created)  # placeholder so the card is checked as a whole
        return self._store(tensors, HeadCard.from_dict(data, folder=source), created)

    def _store(self, tensors: dict[str, torch.Tensor], card: HeadCard, created: datetime,
               adapter: Mapping[str, bytes] | None = None) -> str:
        """Write a version folder for ``card`` (its id replaced by a free one) and return the id."""
        adapter = folders.adapter_files(card) if adapter is None else adapter
        for _ in range(5):  # a clash needs two saves in one second with the same 16 random bits
            version = _new_version_id(created)
            files, _ = folders.version_files(tensors, card.replace(version=version), adapter)
            try:
                self.versions_dir.mkdir(parents=True, exist_ok=True)
                temp = folders.write_into_temp(self.versions_dir, files)
            except OSError as error:
                raise unwritable("save the head version", self.versions_dir, error) from error
            try:
                # rename() refuses a non-empty existing target, so a clash cannot overwrite.
                os.rename(temp, self.versions_dir / version)
            except OSError as error:
                shutil.rmtree(temp, ignore_errors=True)
                if (self.versions_dir / version).exists():
                    continue
                raise unwritable("save the head version", self.versions_dir, error) from error
            folders.fsync_dir(self.versions_dir)
            return version
        raise RegistryError("could not find a free version id; try again")

    def delete(self, version: str, *, actor: Actor | None = None) -> None:
        """Remove a saved version (operators only). The shipped default and the active version stay;
        the version also leaves the rollback history."""
        actor = require(actor or self.default_actor, DELETE)
        folder, is_builtin = self._folder(version)
        if is_builtin:
            raise RegistryError("the shipped default cannot be deleted: it is what every user falls back to")
        with self.record.locked():
            state = self.record.read_for_update()
            if self._resolve(state["active"]) == version:
                raise RegistryError(f"version {version} is active: activate or roll back to another one first")
            aside = self.versions_dir / f"{folders.TEMP_PREFIX}deleted-{secrets.token_hex(8)}"
            try:  # renamed aside first, so the version disappears whole, never half-deleted
                os.rename(folder, aside)
            except OSError as error:
                raise unwritable(f"delete version {version}", self.versions_dir, error) from error
            state["history"] = [v for v in state["history"] if v != version]
            self.record.add_event(state, "deleted", version, actor)
            try:
                self.record.write(state)
            except RegistryUnwritable as error:  # the folder is gone either way; only the record failed
                log.warning("version %s deleted, but the record was not updated: %s", version, error)
            shutil.rmtree(aside, ignore_errors=True)
        self._checked.pop(str(folder), None)

    # ---- what is served

    def _resolve(self, stored: str | None) -> str | None:
        # active.json stores "builtin" for the shipped head so a re-shipped default stays active.
        if stored == BUILTIN_ALIAS:
            return self._builtin_id()
        return stored

    def serving(self) -> tuple[str, str | None]:
        """(the version every user is served, None) or, when the record names a version that is gone
        or damaged or the record itself is unreadable, (the shipped default, why it is served instead)."""
        builtin = self._builtin_id()
        try:
            active = self._resolve(self.record.read()["active"])
            problem = None if active is None else self.damage(active)
        except RegistryError as error:
            active, problem = None, f"the record of the active version is damaged ({error})"
        if problem is not None:
            problem = (problem if active is None else f"the active version {active} cannot be used ({problem})")
            if builtin is None or self.damage(BUILTIN_ALIAS) is not None:
                raise RegistryError(f"{problem}, and there is no usable shipped default; train or import one")
            problem += f"; serving the shipped default {builtin} until an operator activates another"
            if problem not in self._warned:  # once per process and problem, not on every page run
                self._warned.add(problem)
                log.warning(problem)
            return builtin, problem
        active = active or builtin
        if active is None:
            raise RegistryError("no head version is active and there is no builtin default; train or import one")
        return active, None

    def active_version(self) -> str:
        """The active version id; the builtin when nothing was activated, or when the active one is
        missing or damaged (``serving`` says why)."""
        return self.serving()[0]

    def activate(self, version: str, *, actor: Actor | None = None) -> None:
        """Make `version` active (operators only); the previous active one goes onto the rollback
        history, and who did it and when into the record's events. A damaged version is refused."""
        actor = require(actor or self.default_actor, ACTIVATE)
        folder, is_builtin = self._folder(version)
        try:
            self.load(version)  # refuse to activate a damaged version: fail now, not at prediction time
        except RegistryError as error:
            raise RegistryError(f"version {version} is damaged and cannot be activated: "
                                f"{str(error).removeprefix(f'head version {version}: ')}") from error
        stored = BUILTIN_ALIAS if is_builtin else version
        with self.record.locked():
            if not folder.is_dir():  # deleted by someone else since the check above
                raise RegistryError(f"no head version {version!r} in {self.root}")
            state = self.record.read_for_update()
            current = state["active"]
            if current is None and self._builtin_id() is not None:
                current = BUILTIN_ALIAS  # the implicit default is a real place to roll back to
            if current == stored:
                return
            if current is not None:
                state["history"].append(current)
            state["active"] = stored
            self.record.add_event(state, "activated", self._resolve(stored), actor)
            self.record.write(state)

    def can_roll_back(self) -> bool:
        """True when an earlier active version is remembered (what ``rollback`` would return to)."""
        try:
            return bool(self.record.read()["history"])
        except RegistryError:
            return False

    def rollback(self, *, actor: Actor | None = None) -> str:
        """Re-activate the previous active version (operators only) and return it. Earlier versions
        that are gone or damaged since are skipped."""
        actor = require(actor or self.default_actor, ROLL_BACK)
        with self.record.locked():
            try:
                state = self.record.read()
            except RegistryError as error:
                raise RegistryError(f"nothing to roll back to: {error}; activate a version instead") from error
            skipped = []
            while state["history"]:
                # Popping (not pushing the current one) lets repeated rollbacks walk further back.
                candidate = state["history"].pop()
                resolved = self._resolve(candidate)
                if resolved is not None and self.damage(resolved) is None:
                    break
                skipped.append(str(resolved or candidate))
            else:
                raise RegistryError("nothing to roll back to: no earlier active head version"
                                    + (f" that is still usable (skipped {', '.join(skipped)})" if skipped else ""))
            state["active"] = candidate
            self.record.add_event(state, "rolled back to", resolved, actor)
            self.record.write(state)
        return resolved

    def events(self) -> list[dict]:
        """Who activated, rolled back, imported or deleted which version and when, oldest first:
        ``{"at", "action", "version", "by", "role"}``."""
        return self.record.events()

    # ---- download / upload (checks in core.registry.transfer)

    def export_zip(self, version: str) -> bytes:
        """A zip of the version's weights and card (and its text adapter unless that is shipped with the
        app), verified before it leaves (anyone may download)."""
        folder, _ = self._folder(version)
        return transfer.export_zip(folder, self.card(version), version)

    def import_version(self, weights: bytes, card_json: bytes, *, adapter: Mapping[str, bytes] | None = None,
                       expected: dict | None = None, actor: Actor | None = None) -> str:
        """Check an uploaded weights + card pair (and the adapter files it carries, by name) and store it as
        a new version, not activated; returns its id. Operators only (``AccessDenied`` for a viewer);
        RegistryError, before anything is written, for an upload that does not fit ``expected`` or names
        files of this server (``transfer.check_upload``); DuplicateVersion when the registry already holds
        an identical version. The import is recorded with who made it."""
        actor = require(actor or self.default_actor, IMPORT)
        upload = transfer.check_upload(weights, card_json, adapter=adapter, expected=expected)
        existing = transfer.identical_version(self.versions(), upload.weights_sha256, upload.card)
        if existing is not None:
            raise transfer.DuplicateVersion(existing)
        created = now()
        card = upload.card.to_dict() | {"created_at": created.isoformat(timespec="microseconds")}
        card.setdefault("note", "")
        card.setdefault("parent", None)
        version = self._store(upload.tensors, HeadCard.from_dict(card), created, upload.adapter)
        self.record.note("imported", version, actor)
        return version

    def import_zip(self, data: bytes, *, expected: dict | None = None, actor: Actor | None = None) -> str:
        """Import a zip made by export_zip (read in memory, nothing extracted; operators only); returns
        the new id."""
        actor = require(actor or self.default_actor, IMPORT)
        weight_bytes, card_json, adapter = transfer.read_zip(data)
        return self.import_version(weight_bytes, card_json, adapter=adapter, expected=expected, actor=actor)
