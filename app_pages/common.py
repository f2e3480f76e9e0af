"""Streamlit glue shared by the pages: the cached engine, per-user state, small formatting helpers.

Not a page itself (st.navigation only runs the files streamlit_app.py lists). Model logic stays in
core/; this file only decides what is cached per process and what is kept per session.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import access, session, uploads
from app.formatting import literal, pct  # noqa: F401 - the pages format numbers and user strings through common
from core import config
from core.access import Actor
from core.encoders import EncoderUnavailable
from core.heads.correction_set import CorrectionSet
from core.registry import RegistryError


@st.cache_resource(show_spinner="Loading the encoders: once per server process, about 15–20 s on a 2-core laptop CPU…")
def _encoders(text_spec: str, adapter: str | None, image_spec: str):
    from core.scoring.predict import load_encoders
    return load_encoders(text_spec, adapter, image_spec)


def _cached_encoders(card):
    adapter = card.adapter_dir()
    return _encoders(card.text_encoder.spec, None if adapter is None else str(adapter), card.image_encoder.spec)


@st.cache_resource(show_spinner="Loading the active head…")
def _engine(registry_root: str, head_dir: str) -> session.Engine:
    return session.load_engine(Path(head_dir), encoders=_cached_encoders)


def engine() -> session.Engine:
    """The process-wide engine; stops the page with a clear message when no head can be loaded."""
    try:
        return _engine(*session.engine_key())
    except (session.EngineUnavailable, EncoderUnavailable, RegistryError, ValueError) as error:
        st.error(f"The model could not be loaded: {literal(error)}")
        st.stop()


@st.cache_resource(show_spinner=False)
def _feature_store(path: str):
    from core.features.store import FeatureStore
    return FeatureStore(path)


def feature_store():
    """This MMSA_HOME's feature store, opened once per process, without loading a model: the analysis
    page's themes and version comparisons read a run's stored features from it."""
    return _feature_store(str(config.feature_store_path()))


def active_predictor(eng: session.Engine):
    """(version, predictor) of the version that is active *now* (another session may have switched);
    a warning when the active version is damaged or missing and the shipped default serves instead."""
    try:
        version, problem = eng.registry.serving()
        if problem:
            st.warning(f"The head version being served is the shipped default: {literal(problem)}.",
                       icon=":material/warning:")
        return version, eng.predictor(version)
    except (RegistryError, ValueError) as error:
        st.error(f"The active head version cannot be used: {literal(error)}")
        st.stop()


def glossary() -> None:
    """A closed expander that explains the words the page uses."""
    from app.glossary import glossary_markdown

    with st.expander("What the words mean"):
        st.markdown(glossary_markdown())


def page_start(title: str, caption: str):
    """The opening every working page shares: its title and caption, then (engine, active version,
    its predictor, this user's session state). Stops the page with a clear message when no head can
    be loaded."""
    st.title(title)
    st.caption(caption)
    eng = engine()
    version, predictor = active_predictor(eng)
    return eng, version, predictor, st.session_state


@st.cache_resource(show_spinner="Encoding the reference set (first time only, about 20 s for MVSA dev)…")
def _reference(source: str, text_id: str, image_id: str, _eng: session.Engine):
    from app.examples import load_reference_set
    return load_reference_set(_eng.text_encoder, _eng.image_encoder, _eng.store)


def reference_set(eng: session.Engine):
    from app.examples import reference_source
    _, csv_path, _ = reference_source()
    return _reference(str(csv_path), eng.text_encoder.id, eng.image_encoder.id, eng)


def corrections() -> CorrectionSet:
    """This user's correction set (filled from every page, trained on the correction page)."""
    if "corrections" not in st.session_state:
        st.session_state["corrections"] = CorrectionSet()
    return st.session_state["corrections"]


def session_dir(name: str) -> Path:
    """A folder for this browser tab's uploads (one per purpose, reused across reruns); it is removed
    once the tab's session has ended (``app.uploads.sweep``, run now and then from here)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    root = uploads.uploads_root()
    uploads.sweep_now_and_then(root, _live_session_ids)
    ctx = get_script_run_ctx()
    return uploads.session_folder(root, ctx.session_id if ctx else "no-session", name)


def _live_session_ids() -> set[str] | None:
    """The ids of the sessions this server still knows (connected, or disconnected but resumable); None
    when they cannot be read. Streamlit has no public list: this reads its session manager, here only."""
    try:
        from streamlit import runtime

        if not runtime.exists():
            return None
        return {info.session.id for info in runtime.get_instance()._session_mgr.list_sessions()}
    except (ImportError, AttributeError, TypeError):
        return None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


# ----- who may change the model -------------------------------------------------------------------

def access_settings() -> access.AccessSettings:
    """The operator password hash / operator accounts from Streamlit secrets and the environment."""
    try:
        secrets = st.secrets.to_dict()
    except FileNotFoundError:  # no secrets.toml at all (a laptop): nothing configured
        secrets = {}
    return access.read_settings(secrets, config.access_environment())


def _user() -> dict:
    return dict(st.user.to_dict())  # empty unless st.login is configured and used


def _client_address() -> str | None:
    """The address this tab's browser connects from, as the server sees it (the TCP peer: behind a
    reverse proxy, the proxy's); None when unknown. ``st.context.ip_address`` reports a loopback peer as
    None, the same as an unknown one, so the peer is read where st.context reads it, the session's client
    context, falling back to ``st.context.ip_address`` should that place change."""
    if _in_test_harness():
        return access.IN_PROCESS
    try:
        from streamlit import runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        client = runtime.get_instance().get_client(ctx.session_id) if ctx and runtime.exists() else None
        address = client.client_context.remote_ip if client is not None else None
    except (ImportError, AttributeError, RuntimeError):
        address = st.context.ip_address
    return address if isinstance(address, str) and address else None


def _in_test_harness() -> bool:
    """Streamlit's AppTest runs the script in-process, with no browser connected (it patches this option
    in ``streamlit.config``, not the copy ``st.get_option`` holds)."""
    from streamlit import config as streamlit_config

    return bool(streamlit_config.get_option("global.appTest"))


def _from_this_machine() -> bool:
    headers = {} if _in_test_harness() else st.context.headers
    return access.from_this_machine(_client_address(), headers.keys())


def current_actor() -> Actor:
    """This browser tab's actor (name, role, why); every registry change the pages make names it."""
    return access.actor_for(access_settings(), password_signed_in=bool(st.session_state.get("_operator_password")),
                            user=_user(), local=_from_this_machine())


def access_panel(key: str) -> Actor:
    """Say which role this tab has and why; offer operator sign-in (password, st.login) or sign-out."""
    settings = access_settings()
    actor = current_actor()
    if settings.problem:
        st.error(literal(settings.problem))
    st.markdown(f"You are **{'an operator' if actor.is_operator else 'a viewer'}**: {_why(actor)}.")
    if settings.open:
        st.caption("No operator password is set: a browser on the server's own machine is an operator, a browser "
                   "on any other machine a viewer. Operators activate, roll back, import and delete head versions "
                   "and read server folders. Behind a reverse proxy on the same machine every browser looks "
                   "local: set an operator password there (see docs/access.md).")
        return actor
    st.caption("Viewers explore pairs, score batches, train corrections in their own tab and download "
               "versions; operators also activate, roll back, import and delete versions and read server folders.")
    if actor.is_operator:
        if st.session_state.get("_operator_password") and st.button("Sign out as operator", key=f"{key}_sign_out"):
            st.session_state.pop("_operator_password", None)
            st.rerun()
        if _user().get("is_logged_in") and st.button("Sign out of your account", key=f"{key}_logout"):
            st.logout()
        return actor
    if settings.password_usable:
        with st.form(f"{key}_sign_in", clear_on_submit=True, border=False):
            password = st.text_input("Operator password", type="password", key=f"{key}_password")
            submitted = st.form_submit_button("Sign in as operator")
        if submitted:
            outcome = access.sign_in_with_password(password, settings)
            if outcome.ok:
                st.session_state["_operator_password"] = True
                st.rerun()
            st.error(outcome.message)
    if settings.sign_in_configured and settings.operators:
        if _user().get("is_logged_in"):
            if st.button("Sign out of your account", key=f"{key}_logout"):
                st.logout()
        elif st.button("Sign in with your account", key=f"{key}_login"):
            st.login(settings.login_provider) if settings.login_provider else st.login()
    return actor


def _why(actor: Actor) -> str:
    """Why the actor has its role, as Markdown: the program's words, with the account name that opens
    it ("alice@example.com is not a listed operator account") shown as written."""
    if actor.name and actor.why.startswith(actor.name + " "):
        return literal(actor.name) + actor.why[len(actor.name):]
    return actor.why


def viewer_reason(actor: Actor) -> str:
    """The help text of a control a viewer cannot use."""
    return (f"Only operators can do this: you are a viewer ({_why(actor)}). Sign in as an operator under "
            "*Who may change the model* (on Home and at the foot of *Correct the model*).")
