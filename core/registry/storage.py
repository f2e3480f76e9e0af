"""Head versions on disk: each version a folder written atomically (temp folder, then rename), and the
``HeadRegistry`` that lists, saves, activates, rolls back and deletes versions under one root, with the
active pointer in ``active.json`` replaced under a lock. Zip export and import live in ``transfer``.

Damage is expected, not fatal: a version whose files or card are damaged is listed with the reason and
cannot be activated; an active pointer that names a missing or damaged version, or an unreadable
``active.json``, falls back to the shipped default with a warning. What changes what everyone is served
(activate, roll back, import, delete) needs an operator (``core.access``) and is recorded with who and
when in ``active.json``'s ``events``."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors_bytes

from core import config
from core.access import ACTIVATE, DELETE, ROLL_BACK, Actor, local_operator, require
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
MAX_EVENTS = 500  # who changed what and when; the newest are kept
_LOCAL = object()  # "the machine's user": the default actor of a registry opened by the CLI or a script


class RegistryUnwritable(RegistryError, OSError):
    """The registry's folder cannot be written (read-only, full disk, file size limit). Nothing was
    changed: every write goes to a temp file or folder first and is renamed into place only when complete."""


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _unwritable(what: str, where: Path, error: OSError) -> RegistryUnwritable:
    if error.errno in _FULL:
        why = "the disk is full (or a file size limit was reached)"
    elif error.errno in _READ_ONLY:
        why = "the folder is read-only"
    else:
        why = error.strerror or str(error)
    return RegistryUnwritable(f"could not {what}: {why} ({where}); nothing was changed")


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
    return datetime.now(UTC)


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
        self.active_file = self.root / "active.json"
        self.lock_file = self.root / ".lock"
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

    # ---- damage

    def _stats(self, folder: Path) -> tuple:
        out = []
        for file in (CARD_FILE, WEIGHTS_FILE):
            try:
                info = (folder / file).stat()
                out.append((info.st_size, info.st_mtime_ns, info.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def damage(self, version: str) -> str | None:
        """Why a version cannot be used (unreadable or invalid card, weights missing, truncated or not
        matching the card's sha256), or None when it is whole. Versions never change once saved, so the
        check is redone only when a file's size, time or inode changes."""
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
        """Cards of all versions, newest first, builtin last. A damaged version is listed too, as
        ``{"version", "damaged": reason, ...}`` (whatever its card still says), never raised."""
        cards = []
        try:
            entries = list(self.versions_dir.iterdir())
        except OSError:
            entries = []
        for entry in entries:
            if not entry.is_dir() or not _VERSION_RE.fullmatch(entry.name) or entry.name == BUILTIN_ALIAS:
                continue  # temp folders (".tmp-...") and stray files
            problem = self.damage(entry.name)
            if problem is None:
                try:
                    cards.append(self.card(entry.name))
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
                cards.append(self.card(BUILTIN_ALIAS))
            except RegistryError as error:
                cards.append(self._damaged_entry(builtin_id, self.builtin, str(error), is_builtin=True))
        return cards

    # ---- writing a version

    def save(self, tensors: dict[str, torch.Tensor], card: dict, *, note: str = "", parent: str | None = None,
             actor: Actor | None = None) -> str:
        """Store a new version (not activated) and return its id. Anyone may save: a saved version is
        listed, but nobody is served it until an operator activates it. RegistryUnwritable on a
        read-only or full disk, with nothing half-written left behind."""
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
            try:
                self.versions_dir.mkdir(parents=True, exist_ok=True)
                temp = _write_into_temp(self.versions_dir, weights, card_bytes)
            except OSError as error:
                raise _unwritable("save the head version", self.versions_dir, error) from error
            try:
                # rename() refuses a non-empty existing target, so a clash cannot overwrite.
                os.rename(temp, self.versions_dir / version)
            except OSError as error:
                shutil.rmtree(temp, ignore_errors=True)
                if (self.versions_dir / version).exists():
                    continue
                raise _unwritable("save the head version", self.versions_dir, error) from error
            _fsync_dir(self.versions_dir)
            return version
        raise RegistryError("could not find a free version id; try again")

    def delete(self, version: str, *, actor: Actor | None = None) -> None:
        """Remove a saved version (operators only). The shipped default and the active version stay;
        the version also leaves the rollback history."""
        actor = require(actor or self.default_actor, DELETE)
        folder, is_builtin = self._folder(version)
        if is_builtin:
            raise RegistryError("the shipped default cannot be deleted: it is what every user falls back to")
        with self._locked():
            state = self._read_state_for_update()
            if self._resolve(state["active"]) == version:
                raise RegistryError(f"version {version} is active: activate or roll back to another one first")
            aside = self.versions_dir / f"{_TEMP_PREFIX}deleted-{secrets.token_hex(8)}"
            try:  # renamed aside first, so the version disappears whole, never half-deleted
                os.rename(folder, aside)
            except OSError as error:
                raise _unwritable(f"delete version {version}", self.versions_dir, error) from error
            state["history"] = [v for v in state["history"] if v != version]
            self._add_event(state, "deleted", version, actor)
            try:
                self._write_state(state)
            except RegistryUnwritable as error:  # the folder is gone either way; only the record failed
                log.warning("version %s deleted, but the record was not updated: %s", version, error)
            shutil.rmtree(aside, ignore_errors=True)
        self._checked.pop(str(folder), None)

    # ---- the active pointer

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per open file, so this serialises threads, processes and app sessions alike.
        try:
            handle = open(self.lock_file, "a+")  # noqa: SIM115 - closed by the with below; open errors get a clear message
        except OSError as error:
            raise _unwritable("change the head registry", self.root, error) from error
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> dict:
        """active.json as {active, history, events}; RegistryError when it exists but cannot be read."""
        try:
            raw = self.active_file.read_text("utf-8")
        except FileNotFoundError:
            return {"active": None, "history": [], "events": []}
        except (OSError, UnicodeDecodeError) as error:
            raise RegistryError(f"{self.active_file} is unreadable ({error})") from error
        try:
            state = json.loads(raw)
        except ValueError as error:
            raise RegistryError(f"{self.active_file} is damaged ({error})") from error
        if not isinstance(state, dict) or not isinstance(state.get("history", []), list) \
                or not isinstance(state.get("active"), (str, type(None))):
            raise RegistryError(f"{self.active_file} is damaged (expected {{'active': ..., 'history': [...]}})")
        events = state.get("events", [])
        return {"active": state.get("active"),
                "history": [v for v in state["history"] if isinstance(v, str)] if "history" in state else [],
                "events": [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []}

    def _read_state_for_update(self) -> dict:
        """The state to change (under the lock). A damaged active.json is kept aside as
        ``active.json.damaged-<time>`` and a fresh record started: the next write repairs it."""
        try:
            return self._read_state()
        except RegistryError as error:
            aside = self.root / f"active.json.damaged-{_now().strftime('%Y%m%d-%H%M%S')}"
            with contextlib.suppress(OSError):
                os.replace(self.active_file, aside)
            log.warning("%s; kept it as %s and started a new record", error, aside.name)
            return {"active": None, "history": [], "events": []}

    def _write_state(self, state: dict) -> None:
        state = {"active": state["active"], "history": state["history"][-MAX_HISTORY:],
                 "events": state.get("events", [])[-MAX_EVENTS:]}
        temp = self.root / f"{_TEMP_PREFIX}active-{secrets.token_hex(8)}.json"
        try:
            _write_file(temp, json.dumps(state, indent=2).encode("utf-8"))
            os.replace(temp, self.active_file)
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise _unwritable("record the active head version", self.root, error) from error
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _add_event(state: dict, action: str, version: str | None, actor: Actor) -> None:
        # Names and roles only: nothing secret is ever written here.
        state.setdefault("events", []).append({"at": _now().isoformat(timespec="seconds"), "action": action,
                                               "version": version, "by": actor.name, "role": actor.role.value})

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
            active = self._resolve(self._read_state()["active"])
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
        with self._locked():
            if not folder.is_dir():  # deleted by someone else since the check above
                raise RegistryError(f"no head version {version!r} in {self.root}")
            state = self._read_state_for_update()
            current = state["active"]
            if current is None and self._builtin_id() is not None:
                current = BUILTIN_ALIAS  # the implicit default is a real place to roll back to
            if current == stored:
                return
            if current is not None:
                state["history"].append(current)
            state["active"] = stored
            self._add_event(state, "activated", self._resolve(stored), actor)
            self._write_state(state)

    def can_roll_back(self) -> bool:
        """True when an earlier active version is remembered (what ``rollback`` would return to)."""
        try:
            return bool(self._read_state()["history"])
        except RegistryError:
            return False

    def rollback(self, *, actor: Actor | None = None) -> str:
        """Re-activate the previous active version (operators only) and return it. Earlier versions
        that are gone or damaged since are skipped."""
        actor = require(actor or self.default_actor, ROLL_BACK)
        with self._locked():
            try:
                state = self._read_state()
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
            self._add_event(state, "rolled back to", resolved, actor)
            self._write_state(state)
        return resolved

    def events(self) -> list[dict]:
        """Who activated, rolled back, imported or deleted which version and when, oldest first:
        ``{"at", "action", "version", "by", "role"}``."""
        try:
            return list(self._read_state()["events"])
        except RegistryError:
            return []

    def record(self, action: str, version: str, actor: Actor) -> None:
        """Add an event to the record (after an import); a failure to write it is logged, not raised,
        since the version itself is already safely stored."""
        try:
            with self._locked():
                state = self._read_state_for_update()
                self._add_event(state, action, version, actor)
                self._write_state(state)
        except RegistryError as error:
            log.warning("%s %s, but the record was not updated: %s", action, version, error)

    # ---- download / upload (core.registry.transfer)

    def export_zip(self, version: str) -> bytes:
        """A zip of weights.safetensors + card.json, verified before it leaves (anyone may download)."""
        from core.registry.transfer import export_zip
        return export_zip(self, version)

    def import_version(self, weights: bytes, card_json: bytes, *, expected: dict | None = None,
                       actor: Actor | None = None) -> str:
        """Validate an uploaded weights + card pair and store it as a new version (not activated;
        operators only); returns the new version id."""
        from core.registry.transfer import import_version
        return import_version(self, weights, card_json, expected=expected, actor=actor)

    def import_zip(self, data: bytes, *, expected: dict | None = None, actor: Actor | None = None) -> str:
        """Import a zip made by export_zip (read in memory, nothing extracted; operators only); returns
        the new id."""
        from core.registry.transfer import import_zip
        return import_zip(self, data, expected=expected, actor=actor)
