"""Which head version is active, the ones active before it (what a rollback returns to) and who changed
what when: ``active.json`` under the registry's root, replaced atomically under a file lock::

    {"active": version, "history": [previous actives, oldest first],
     "events": [{"at", "action", "version", "by", "role"}, ...]}

The record holds names only; which versions exist and whether they are whole is ``storage``'s business."""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from core.access import Actor
from core.registry import folders
from core.registry.card import RegistryError

log = logging.getLogger(__name__)

MAX_HISTORY = 100  # enough rollbacks for any human; keeps active.json small
MAX_EVENTS = 500  # who changed what and when; the newest are kept


def now() -> datetime:
    """The current time in UTC (one clock for versions and events)."""
    return datetime.now(UTC)


def empty_state() -> dict:
    """The record of a registry where nothing was ever activated."""
    return {"active": None, "history": [], "events": []}


class ActiveRecord:
    """``active.json`` and its lock: read, change under the lock, write atomically. Safe across threads,
    processes and app sessions."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / "active.json"
        self.lock_file = self.root / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's lock (flock is per open file, so this serialises threads and processes alike)."""
        try:
            handle = open(self.lock_file, "a+")  # closed by the with below; open errors get a clear message
        except OSError as error:
            raise folders.unwritable("change the head registry", self.root, error) from error
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read(self) -> dict:
        """The record as {active, history, events}; RegistryError when it exists but cannot be read."""
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return empty_state()
        except (OSError, UnicodeDecodeError) as error:
            raise RegistryError(f"{self.path} is unreadable ({error})") from error
        try:
            state = json.loads(raw)
        except ValueError as error:
            raise RegistryError(f"{self.path} is damaged ({error})") from error
        if not isinstance(state, dict) or not isinstance(state.get("history", []), list) \
                or not isinstance(state.get("active"), (str, type(None))):
            raise RegistryError(f"{self.path} is damaged (expected {{'active': ..., 'history': [...]}})")
        events = state.get("events", [])
        return {"active": state.get("active"),
                "history": [v for v in state["history"] if isinstance(v, str)] if "history" in state else [],
                "events": [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []}

    def read_for_update(self) -> dict:
        """The record to change (under the lock). A damaged active.json is kept aside as
        ``active.json.damaged-<time>`` and a fresh record started: the next write repairs it."""
        try:
            return self.read()
        except RegistryError as error:
            aside = self.root / f"active.json.damaged-{now().strftime('%Y%m%d-%H%M%S')}"
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.warning("%s; kept it as %s and started a new record", error, aside.name)
            return empty_state()

    def write(self, state: dict) -> None:
        """Replace active.json with ``state`` (history and events trimmed to their limits)."""
        state = {"active": state["active"], "history": state["history"][-MAX_HISTORY:],
                 "events": state.get("events", [])[-MAX_EVENTS:]}
        temp = self.root / f"{folders.TEMP_PREFIX}active-{secrets.token_hex(8)}.json"
        try:
            folders.write_file(temp, json.dumps(state, indent=2).encode("utf-8"))
            os.replace(temp, self.path)
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise folders.unwritable("record the active head version", self.root, error) from error
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    @staticmethod
    def add_event(state: dict, action: str, version: str | None, actor: Actor) -> None:
        """Append who did ``action`` to ``version`` and when. Names and roles only: nothing secret is written."""
        state.setdefault("events", []).append({"at": now().isoformat(timespec="seconds"), "action": action,
                                               "version": version, "by": actor.name, "role": actor.role.value})

    def events(self) -> list[dict]:
        """The events, oldest first; none when the record cannot be read."""
        try:
            return list(self.read()["events"])
        except RegistryError:
            return []

    def note(self, action: str, version: str, actor: Actor) -> None:
        """Add one event; a failure to write it is logged, not raised (what it records is already done)."""
        try:
            with self.locked():
                state = self.read_for_update()
                self.add_event(state, action, version, actor)
                self.write(state)
        except RegistryError as error:
            log.warning("%s %s, but the record was not updated: %s", action, version, error)
