"""Which role a browser tab has, from the server's configuration (no Streamlit here: the pages pass in
``st.secrets``, the environment, ``st.user`` and where the browser connects from).

- Nothing configured: a browser on the server's own machine (a loopback connection) is the operator (a
  laptop); a browser anywhere else is a viewer, since Streamlit listens on every interface and anyone
  who reaches the port would otherwise change what everyone is served. Behind a reverse proxy on the
  same machine every browser connects from loopback: set a password there.
- An operator password hash (``[access] operator_password_hash`` in secrets, or
  ``MMSA_OPERATOR_PASSWORD_HASH``): everyone is a viewer until they sign in with the password.
- Operator accounts (``[access] operators = [emails]``, or ``MMSA_OPERATORS``, comma-separated) with
  Streamlit's own sign-in (``st.login``, an ``[auth]`` section in secrets): the listed accounts are
  operators once signed in.
A malformed hash makes nobody an operator by password (it never falls back to "everyone may").
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core import config
from core.access import (
    PASSWORD_ACCOUNT,
    Actor,
    BadPasswordHash,
    RateLimiter,
    Role,
    SignIn,
    check_hash_format,
    try_password,
)

HASH_ENV, OPERATORS_ENV = config.OPERATOR_PASSWORD_HASH_ENV, config.OPERATORS_ENV
SECRETS_SECTION = "access"

# The page's stand-in address when no browser is connected at all (the script runs inside Streamlit's
# test harness, in this process, as the command line does).
IN_PROCESS = "in-process"
# Headers a reverse proxy adds: a browser that connects to loopback directly never sends them.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

LIMITER_FILE = "sign-in-waits.sqlite"  # under MMSA_HOME: the waits outlive a reload and a restart


@dataclass(frozen=True)
class AccessSettings:
    password_hash: str | None = None
    operators: tuple[str, ...] = ()  # account e-mails, lower case
    sign_in_configured: bool = False  # st.login has an [auth] section to work with
    login_provider: str | None = None  # the named provider ([auth.<name>]) st.login is given, if any
    problem: str | None = None  # a configuration mistake to show (never the secret itself)

    @property
    def open(self) -> bool:
        """No operator password and no operator accounts: a browser on the server's machine is the operator."""
        return not self.password_hash and not self.operators and self.problem is None

    @property
    def password_usable(self) -> bool:
        return bool(self.password_hash) and self.problem is None


def _operators(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(sorted({str(v).strip().lower() for v in value if str(v).strip()}))


def read_settings(secrets: Mapping, env: Mapping) -> AccessSettings:
    """The access settings from Streamlit secrets (``[access]``, ``[auth]``) and the environment; the
    environment wins where both set a value."""
    section = secrets.get(SECRETS_SECTION) or {}
    section = section if isinstance(section, Mapping) else {}
    password_hash = (env.get(HASH_ENV) or section.get("operator_password_hash") or "").strip() or None
    operators = _operators(env.get(OPERATORS_ENV) or section.get("operators") or ())
    problem = None
    if password_hash:
        try:
            check_hash_format(password_hash)
        except BadPasswordHash as error:
            problem = f"Operator sign-in is off: {error}."
    if operators and "auth" not in secrets:
        problem = ((problem + " ") if problem else "") + (
            "Operator accounts are listed, but sign-in (st.login) has no [auth] section in the secrets, "
            "so none of them can sign in.")
    auth = secrets.get("auth")
    providers = sorted(k for k, v in auth.items() if isinstance(v, Mapping)) if isinstance(auth, Mapping) else []
    return AccessSettings(password_hash=password_hash, operators=operators, sign_in_configured="auth" in secrets,
                          login_provider=providers[0] if providers else None, problem=problem)


@functools.lru_cache(maxsize=8)
def _limiter_at(path: Path) -> RateLimiter:
    return RateLimiter(path)


def limiter() -> RateLimiter:
    """The password limiter of this data folder, shared by every tab and server process that uses it."""
    return _limiter_at(config.home_dir() / LIMITER_FILE)


def sign_in_with_password(password: str, settings: AccessSettings) -> SignIn:
    """One operator password attempt, slowed per account (the password's one account, ``operator``),
    whichever tab, address or server process it comes from."""
    if not settings.password_usable:
        return SignIn(False, "Operator sign-in by password is off on this server.")
    return try_password(password, settings.password_hash, limiter(), PASSWORD_ACCOUNT)


def from_this_machine(address: str | None, header_names: Iterable[str] = ()) -> bool:
    """Whether a browser connects from the server's own machine: its connection's address (the TCP
    peer) is a loopback one (127.0.0.0/8, ::1) and no proxy forwarded it. An unknown or unreadable
    address is not local."""
    if address == IN_PROCESS:
        return True
    if not isinstance(address, str) or not address:
        return False
    if any(str(name).lower() in FORWARDING_HEADERS for name in header_names):
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1, as a dual-stack socket reports an IPv4 peer
    return ip.is_loopback


def actor_for(settings: AccessSettings, *, password_signed_in: bool, user: Mapping | None,
              local: bool = False) -> Actor:
    """This tab's actor: who they are (a name to show and record, never a secret), their role and why.
    ``local``: the browser connects from the server's own machine (``from_this_machine``); it matters
    only when nothing is configured."""
    user = user or {}
    email = str(user.get("email") or "").strip() if user.get("is_logged_in") else ""
    if settings.open:
        if local:
            return Actor("local user", Role.OPERATOR, "no operator password or operator accounts are configured, "
                         "and this browser is on the server's own machine")
        return Actor("viewer", Role.VIEWER, "no operator password is configured, so only a browser on the "
                     "server's own machine may act as operator; to sign in from here, the server's "
                     "administrator sets an operator password hash (`python -m core.cli hash-password`, "
                     "see docs/access.md)")
    if email and email.lower() in settings.operators:
        return Actor(email, Role.OPERATOR, "signed in with a listed operator account")
    if password_signed_in and settings.password_usable:
        return Actor(email or "operator", Role.OPERATOR, "signed in with the operator password")
    if email:
        why = f"{email} is not a listed operator account"
    else:
        why = "not signed in as an operator"
    return Actor(email or "viewer", Role.VIEWER, why)
