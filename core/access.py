"""Who may change what every user is served: two roles, the operator password's hash, and a rate limiter.

*Viewers* explore, score batches and train corrections in their own browser tab, and may download a
version. *Operators* may also activate, roll back, import and delete head versions and read server
folders. The registry's changing methods take an ``Actor`` and refuse a viewer with ``AccessDenied``,
so a disabled button is not the only guard. The command line acts as the operator of its own
``MMSA_HOME`` (``local_operator``): whoever runs it is the machine's user.

The operator password is never stored: only ``scrypt$n$r$p$salt$hash`` (hex), made by
``python -m core.cli hash-password``; ``verify_password`` compares in constant time and
``RateLimiter`` makes each wrong guess on an account wait longer than the last, across tabs, addresses
and restarts.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from core.errors import InputError


class Role(str, Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"


# What only an operator may do, in the words the refusals use.
ACTIVATE, ROLL_BACK, IMPORT, DELETE, SERVER_FOLDERS = (
    "activate a head version", "roll back the head version", "import a head version", "delete a head version",
    "read folders on the server")
DELETE_RUN = "delete a saved run"
OPERATOR_ONLY = (ACTIVATE, ROLL_BACK, IMPORT, DELETE, SERVER_FOLDERS, DELETE_RUN)


@dataclass(frozen=True)
class Actor:
    """Someone acting on the registry: a display name (never a secret), a role, and why they have it."""

    name: str
    role: Role
    why: str = ""

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def can(self, action: str) -> bool:
        return self.is_operator or action not in OPERATOR_ONLY


class AccessDenied(PermissionError):
    """A viewer asked for something only an operator may do; the message says what and how to become one."""


def require(actor: Actor | None, action: str) -> Actor:
    """Return ``actor`` when it may do ``action``, else raise AccessDenied with a message for the user."""
    if not isinstance(actor, Actor):
        raise AccessDenied(f"cannot {action}: no one is named as acting (pass an operator actor)")
    if not actor.can(action):
        raise AccessDenied(f"only an operator may {action}; {actor.name} is a viewer"
                           + (f" ({actor.why})" if actor.why else "")
                           + ". Sign in as an operator, or ask one.")
    return actor


def local_operator() -> Actor:
    """The machine's user, operator of their own MMSA_HOME (the command line, scripts, the tests)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = "local user"
    return Actor(name, Role.OPERATOR, "the machine's user")


# ---- the operator password's hash

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1  # ~50 ms and 16 MB a check: slow for a guesser, fine for a person
_MAX_PASSWORD_BYTES = 1024


class BadPasswordHash(InputError):
    """The configured hash is not in the ``scrypt$n$r$p$salt$hash`` form (a pasted password, a typo)."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``password`` with a fresh random salt (what goes into the secrets)."""
    if not isinstance(password, str) or not password:
        raise InputError("the password is empty")
    data = password.encode("utf-8")
    if len(data) > _MAX_PASSWORD_BYTES:
        raise InputError(f"the password is over {_MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = str(encoded).strip().split("$")
    try:
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16) or len(salt) < 8 or len(digest) < 16:
            raise ValueError
    except ValueError:
        # Never echo the value: it may be a password pasted in by mistake.
        raise BadPasswordHash("the operator password hash is not in the form scrypt$n$r$p$salt$hash; make one "
                              "with `python -m core.cli hash-password`") from None
    return n, r, p, salt, digest


def check_hash_format(encoded: str) -> None:
    """Raise BadPasswordHash when ``encoded`` is not a hash this module made."""
    _parse_hash(encoded)


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; the digests are compared in constant time."""
    n, r, p, salt, digest = _parse_hash(encoded)
    data = password.encode("utf-8") if isinstance(password, str) else b""
    if not data or len(data) > _MAX_PASSWORD_BYTES:
        return False
    candidate = hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=256 * 1024 * 1024)
    return hmac.compare_digest(candidate, digest)


# ---- slowing down guessers

class RateLimiter:
    """Per-account wait after wrong passwords: 1 s after the first, doubling with each further one (at most
    ``max_wait`` s). While an account waits, attempts on it are refused unchecked; a right password clears it.

    Keyed by the account guessed at (the operator password is one account), not by who guesses: tabs,
    reloads and addresses (everyone behind one proxy shares one) change nothing. The counts live in a small
    SQLite file (``path``), so a server restart does not clear them either and several server processes
    share them; ``path=None`` keeps them in memory. The file holds at most ``max_accounts`` rows (the
    oldest go first), and an account quiet for ``forget_after`` s starts again from 1 s.
    A file that cannot be opened or written leaves the waits in memory, with a warning."""

    def __init__(self, path: str | Path | None = None, first_wait: float = 1.0, max_wait: float = 300.0,
                 clock: Callable[[], float] = time.time, max_accounts: int = 1_000, forget_after: float = 86_400.0):
        self.first_wait, self.max_wait, self.clock = first_wait, max_wait, clock
        self.max_accounts, self.forget_after = max_accounts, forget_after
        self.path = Path(path) if path is not None else None
        self.notice: str | None = None  # why the waits are kept in memory only, when they are
        self._lock = threading.Lock()
        try:
            self._db = self._open(self.path)
        except (sqlite3.OperationalError, OSError) as error:  # read-only, full, no permission
            self._in_memory(f"the sign-in waits file {self.path} cannot be used ({error})")
        except sqlite3.DatabaseError as error:  # not a database: it only held waits, start it again
            warnings.warn(f"the sign-in waits file {self.path} was damaged ({error}); it is started again")
            try:
                self.path.unlink()
                self._db = self._open(self.path)
            except (sqlite3.Error, OSError) as second:
                self._in_memory(f"the sign-in waits file {self.path} cannot be replaced ({second})")

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: each change is its own BEGIN IMMEDIATE … COMMIT, atomic across processes.
        db = sqlite3.connect(str(path) if path else ":memory:", timeout=10, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS failures (account TEXT PRIMARY KEY, count INTEGER NOT NULL,"
                       " until REAL NOT NULL, last REAL NOT NULL)")
            db.execute("SELECT account, count, until, last FROM failures LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _in_memory(self, reason: str) -> None:
        self.notice = f"{reason}; waits after wrong passwords last until the server restarts"
        warnings.warn(self.notice)
        self.path = None
        self._db = self._open(None)

    def wait_left(self, account: str) -> float:
        """Seconds before ``account`` may be tried again (0 when it may now)."""
        with self._lock:
            row = self._run(lambda: self._db.execute("SELECT until FROM failures WHERE account = ?",
                                                     (account,)).fetchone())
        # A wall clock set back must not turn one wait into hours.
        return min(self.max_wait, max(0.0, row[0] - self.clock())) if row else 0.0

    def failed(self, account: str) -> float:
        """Record a wrong password for ``account``; returns the wait it earned."""
        def record() -> float:
            now = self.clock()
            self._db.execute("BEGIN IMMEDIATE")  # read, count and write as one step, whoever else writes
            try:
                row = self._db.execute("SELECT count, last FROM failures WHERE account = ?", (account,)).fetchone()
                count = row[0] + 1 if row and now - row[1] < self.forget_after else 1
                wait = min(self.max_wait, self.first_wait * 2 ** min(count - 1, 64))
                self._db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                                 (account, count, now + wait, now))
                # A flood of accounts must not grow the file forever: the longest quiet ones go.
                self._db.execute("DELETE FROM failures WHERE account IN (SELECT account FROM failures "
                                 "ORDER BY last DESC LIMIT -1 OFFSET ?)", (self.max_accounts,))
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            return wait

        with self._lock:
            return self._run(record)

    def succeeded(self, account: str) -> None:
        """A right password: ``account`` starts again with no wait."""
        with self._lock:
            self._run(lambda: self._db.execute("DELETE FROM failures WHERE account = ?", (account,)))

    def _run(self, step: Callable):
        try:
            return step()
        except sqlite3.Error as error:  # a full or read-only disk, a file damaged under the server
            if self.path is None:
                raise
            self._in_memory(f"the sign-in waits file {self.path} cannot be used ({error})")
            return step()

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class SignIn:
    """The outcome of one password attempt: ``ok``, or a message saying why not."""

    ok: bool
    message: str = ""


PASSWORD_ACCOUNT = "operator"  # the one account the operator password signs in to


def try_password(password: str, encoded: str, limiter: RateLimiter, account: str = PASSWORD_ACCOUNT) -> SignIn:
    """Check a password attempt on ``account`` through the limiter (nothing here logs or keeps the password)."""
    wait = limiter.wait_left(account)
    if wait > 0:
        return SignIn(False, f"Too many wrong passwords: try again in {wait:.0f} s.")
    if verify_password(password, encoded):
        limiter.succeeded(account)
        return SignIn(True)
    wait = limiter.failed(account)
    return SignIn(False, f"Wrong password. The next try is possible in {wait:.0f} s.")
