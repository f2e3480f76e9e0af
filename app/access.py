"""Which role a browser tab has, from the server's configuration (no Streamlit here: the pages pass in
``st.secrets``, the environment and ``st.user``).

- Nothing configured: the single local user is the operator (a laptop).
- An operator password hash (``[access] operator_password_hash`` in secrets, or
  ``MMSA_OPERATOR_PASSWORD_HASH``): everyone is a viewer until they sign in with the password.
- Operator accounts (``[access] operators = [emails]``, or ``MMSA_OPERATORS``, comma-separated) with
  Streamlit's own sign-in (``st.login``, an ``[auth]`` section in secrets): the listed accounts are
  operators once signed in.
A malformed hash makes nobody an operator by password (it never falls back to "everyone may").
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core import config
from core.access import Actor, BadPasswordHash, RateLimiter, Role, check_hash_format

HASH_ENV, OPERATORS_ENV = config.OPERATOR_PASSWORD_HASH_ENV, config.OPERATORS_ENV
SECRETS_SECTION = "access"

# One limiter per server process: every tab of one client shares its wait.
LIMITER = RateLimiter()


@dataclass(frozen=True)
class AccessSettings:
    password_hash: str | None = None
    operators: tuple[str, ...] = ()  # account e-mails, lower case
    sign_in_configured: bool = False  # st.login has an [auth] section to work with
    login_provider: str | None = None  # the named provider ([auth.<name>]) st.login is given, if any
    problem: str | None = None  # a configuration mistake to show (never the secret itself)

    @property
    def open(self) -> bool:
        """No operator password and no operator accounts: whoever opens the app is the operator."""
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


def actor_for(settings: AccessSettings, *, password_signed_in: bool, user: Mapping | None) -> Actor:
    """This tab's actor: who they are (a name to show and record, never a secret), their role and why."""
    user = user or {}
    email = str(user.get("email") or "").strip() if user.get("is_logged_in") else ""
    if settings.open:
        return Actor("local user", Role.OPERATOR, "no operator password or operator accounts are configured, "
                     "so whoever opens the app is the operator")
    if email and email.lower() in settings.operators:
        return Actor(email, Role.OPERATOR, "signed in with a listed operator account")
    if password_signed_in and settings.password_usable:
        return Actor(email or "operator", Role.OPERATOR, "signed in with the operator password")
    if email:
        why = f"{email} is not a listed operator account"
    else:
        why = "not signed in as an operator"
    return Actor(email or "viewer", Role.VIEWER, why)
