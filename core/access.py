"""Who may change what every user is served: two roles, the operator password's hash, and a rate limiter.

*Viewers* explore, score batches and train corrections in their own browser tab, and may download a
version. *Operators* may also activate, roll back, import and delete head versions and read server
folders. The registry's changing methods take an ``Actor`` and refuse a viewer with ``AccessDenied``,
so a disabled button is not the only guard. The command line acts as the operator of its own
``MMSA_HOME`` (``local_operator``): whoever runs it is the machine's user.

The operator password is never stored: only ``scrypt$n$r$p$salt$hash`` (hex), made by
``python -m core.cli hash-password``; ``verify_password`` compares in constant time and
``RateLimiter`` makes each wrong guess wait longer than the last.
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

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
    """Per-client wait after wrong passwords: 1 s after the first, doubling with each further one (at most
    ``max_wait`` s). While a client waits, its attempts are refused unchecked; a right password clears it.
    Thread-safe: one limiter serves every browser tab of a server process."""

    def __init__(self, first_wait: float = 1.0, max_wait: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.first_wait, self.max_wait, self.clock, self.max_clients = first_wait, max_wait, clock, max_clients
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (wrong guesses, may try again at)
        self._lock = threading.Lock()

    def wait_left(self, client: str) -> float:
        """Seconds before ``client`` may try again (0 when it may now)."""
        with self._lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> float:
        """Record a wrong password; returns the wait it earned."""
        with self._lock:
            if len(self._failures) >= self.max_clients:  # a flood of clients must not grow memory forever
                self._failures.pop(next(iter(self._failures)))
            count = self._failures.get(client, (0, 0.0))[0] + 1
            wait = min(self.max_wait, self.first_wait * 2 ** (count - 1))
            self._failures[client] = (count, self.clock() + wait)
            return wait

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


@dataclass(frozen=True)
class SignIn:
    """The outcome of one password attempt: ``ok``, or a message saying why not."""

    ok: bool
    message: str = ""


def try_password(password: str, encoded: str, limiter: RateLimiter, client: str) -> SignIn:
    """Check an operator password attempt from ``client`` through the limiter (nothing here logs or keeps it)."""
    wait = limiter.wait_left(client)
    if wait > 0:
        return SignIn(False, f"Too many wrong passwords: try again in {wait:.0f} s.")
    if verify_password(password, encoded):
        limiter.succeeded(client)
        return SignIn(True)
    wait = limiter.failed(client)
    return SignIn(False, f"Wrong password. The next try is possible in {wait:.0f} s.")
