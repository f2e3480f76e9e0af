"""Who may change the model: viewers explore, score and train in their own tab; operators also activate,
roll back, import and delete versions and read server folders. The pages disable what a viewer cannot
do, and the core refuses it too; an operator signs in with a password (slowed after wrong guesses) or a
listed st.login account; with nothing configured a browser on the server's own machine is the operator and
any other browser a viewer."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app import access as app_access
from app.access import actor_for, from_this_machine, read_settings
from core.access import (
    AccessDenied,
    Actor,
    BadPasswordHash,
    RateLimiter,
    Role,
    hash_password,
    local_operator,
    try_password,
    verify_password,
)

from .conftest import button, new_app, open_page, texts
from .test_registry import make_card, make_heads

PASSWORD = "correct horse battery staple"
VIEWER = Actor("viewer", Role.VIEWER, "not signed in as an operator")
OPERATOR = Actor("alice", Role.OPERATOR, "signed in with the operator password")


@pytest.fixture(scope="module")
def password_hash():
    return hash_password(PASSWORD)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# ----- the password, its hash and the limiter -------------------------------------------------------

def test_the_password_is_kept_only_as_a_salted_hash_compared_in_constant_time(password_hash):
    again = hash_password(PASSWORD)
    assert password_hash != again  # a fresh salt each time
    assert password_hash.startswith("scrypt$") and PASSWORD not in password_hash
    assert verify_password(PASSWORD, password_hash) and verify_password(PASSWORD, again)
    assert not verify_password("correct horse battery stapler", password_hash)
    assert not verify_password("", password_hash)
    with pytest.raises(BadPasswordHash) as refused:
        verify_password(PASSWORD, "hunter2-pasted-by-mistake")
    assert "hunter2" not in str(refused.value)  # a misconfigured secret is never echoed


def test_each_wrong_password_makes_the_next_try_wait_longer(password_hash, tmp_path):
    clock = Clock()
    limiter = RateLimiter(tmp_path / "waits.sqlite", clock=clock)
    first = try_password("guess", password_hash, limiter)
    assert not first.ok and first.message == "Wrong password. The next try is possible in 1 s."
    # Even the right password is refused, unchecked, while the account waits.
    early = try_password(PASSWORD, password_hash, limiter, "operator")
    assert not early.ok and "Too many wrong passwords" in early.message
    assert try_password(PASSWORD, password_hash, limiter, "another account").ok  # another account is not slowed
    clock.now += 1
    assert "in 2 s" in try_password("guess", password_hash, limiter).message
    clock.now += 2
    assert "in 4 s" in try_password("guess", password_hash, limiter).message
    clock.now += 4
    assert try_password(PASSWORD, password_hash, limiter).ok
    assert limiter.wait_left("operator") == 0  # a right password clears the count
    assert "in 1 s" in try_password("guess", password_hash, limiter).message


def test_the_wait_holds_for_the_account_across_tabs_addresses_and_a_server_restart(password_hash, tmp_path):
    """Two guessers (two tabs, two addresses, one proxy: the limiter never asks) add up on the one
    account; a new limiter on the same file, as after a restart, still makes the next guesser wait."""
    clock, path = Clock(), tmp_path / "home" / "sign-in-waits.sqlite"
    first_process = RateLimiter(path, clock=clock)
    second_process = RateLimiter(path, clock=clock)  # another server process on the same data folder
    assert "in 1 s" in try_password("guess 1", password_hash, first_process).message
    clock.now += 1
    assert "in 2 s" in try_password("guess 2", password_hash, second_process).message
    first_process.close()
    second_process.close()

    restarted = RateLimiter(path, clock=clock)
    assert restarted.wait_left("operator") == 2
    assert "Too many wrong passwords: try again in 2 s" in try_password(PASSWORD, password_hash, restarted).message
    clock.now += 2
    assert "in 4 s" in try_password("guess 3", password_hash, restarted).message
    clock.now += 4
    assert try_password(PASSWORD, password_hash, restarted).ok
    assert RateLimiter(path, clock=clock).wait_left("operator") == 0  # the success is kept too


def test_the_waits_file_stays_small_and_a_damaged_one_starts_again(tmp_path):
    clock, path = Clock(), tmp_path / "sign-in-waits.sqlite"
    limiter = RateLimiter(path, clock=clock, max_accounts=3, first_wait=100, max_wait=1000)
    for n in range(10):
        clock.now += 1
        limiter.failed(f"account {n}")
    assert [limiter.wait_left(f"account {n}") > 0 for n in range(10)] == [False] * 7 + [True] * 3
    assert limiter.failed("account 9") == 200
    clock.now += 86_400  # a day of quiet: the next wrong guess starts again from the first wait
    assert limiter.failed("account 9") == 100
    limiter.close()

    path.write_bytes(b"not a database" * 100)
    with pytest.warns(UserWarning, match="was damaged"):
        again = RateLimiter(path, clock=clock)
    assert again.failed("operator") == 1 and RateLimiter(path, clock=clock).wait_left("operator") == 1


def test_the_cli_hashes_a_password_read_from_stdin_never_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "core.cli", "hash-password"], input=PASSWORD + "\n",
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert verify_password(PASSWORD, encoded) and PASSWORD not in result.stdout + result.stderr
    short = subprocess.run([sys.executable, "-m", "core.cli", "hash-password"], input="short\n",
                           capture_output=True, text=True, timeout=120, check=False)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


# ----- roles from the configuration ---------------------------------------------------------------

def test_with_nothing_configured_only_a_browser_on_the_servers_machine_is_the_operator():
    settings = read_settings({}, {})
    assert settings.open
    local = actor_for(settings, password_signed_in=False, user={}, local=True)
    assert local.is_operator and "no operator password" in local.why and "server's own machine" in local.why
    for remote in (actor_for(settings, password_signed_in=False, user={}, local=False),
                   actor_for(settings, password_signed_in=False, user={})):  # not said: not local
        assert remote.role is Role.VIEWER
        assert "only a browser on the server's own machine may act as operator" in remote.why
        assert "operator password hash" in remote.why and "hash-password" in remote.why  # how to change it
    # A password typed in an open server's tab does not make an operator either: there is none to check.
    assert not actor_for(settings, password_signed_in=True, user={}, local=False).is_operator


def test_only_a_direct_loopback_connection_counts_as_this_machine():
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert from_this_machine(address), address
    for address in ("10.0.0.2", "192.168.1.20", "203.0.113.7", "2001:db8::1", "fe80::1%eth0", "::ffff:10.0.0.2",
                    "localhost", "not an address", "", None):
        assert not from_this_machine(address), address  # unknown or unreadable: not local
    # A reverse proxy on this machine connects from loopback but says whom it forwards.
    for header in ("X-Forwarded-For", "x-real-ip", "Forwarded"):
        assert not from_this_machine("127.0.0.1", [header, "Host"]), header
    assert from_this_machine("127.0.0.1", ["Host", "User-Agent"])


def test_with_a_password_everyone_is_a_viewer_until_signed_in(password_hash):
    for settings in (read_settings({}, {"MMSA_OPERATOR_PASSWORD_HASH": password_hash}),
                     read_settings({"access": {"operator_password_hash": password_hash}}, {})):
        assert not settings.open and settings.problem is None
        viewer = actor_for(settings, password_signed_in=False, user={})
        assert viewer.role is Role.VIEWER and viewer.why == "not signed in as an operator"
        assert actor_for(settings, password_signed_in=True, user={}).is_operator


def test_a_malformed_hash_makes_nobody_an_operator_and_says_why():
    settings = read_settings({}, {"MMSA_OPERATOR_PASSWORD_HASH": "my-secret-password"})
    assert not settings.open and "not in the form scrypt$" in settings.problem
    assert "my-secret-password" not in settings.problem
    assert not actor_for(settings, password_signed_in=True, user={}).is_operator


def test_listed_st_login_accounts_are_the_operators():
    secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"},
               "access": {"operators": ["Alice@Example.com"]}}
    settings = read_settings(secrets, {})
    assert settings.sign_in_configured and settings.operators == ("alice@example.com",)
    alice = actor_for(settings, password_signed_in=False, user={"is_logged_in": True, "email": "alice@example.com"})
    bob = actor_for(settings, password_signed_in=False, user={"is_logged_in": True, "email": "bob@example.com"})
    assert alice.is_operator and alice.name == "alice@example.com"
    assert not bob.is_operator and "bob@example.com is not a listed operator account" in bob.why
    assert settings.login_provider is None
    assert read_settings({"auth": {"google": {"client_id": "x"}}}, {}).login_provider == "google"
    no_auth = read_settings({"access": {"operators": ["alice@example.com"]}}, {})
    assert "no [auth] section" in no_auth.problem


# ----- the core refuses, not only the buttons ---------------------------------------------------------

@pytest.fixture
def registry(tmp_path):
    from core.registry import HeadRegistry, write_version_folder

    builtin = tmp_path / "default"
    write_version_folder(builtin, make_heads(seed=99), make_card(note="shipped default"))
    return HeadRegistry(tmp_path / "heads", builtin=builtin, actor=None)  # as the app opens it


def test_a_viewer_cannot_change_what_is_served_through_the_core_api(registry):
    saved = registry.save(make_heads(1), make_card(), note="a viewer's correction")  # saving serves nobody
    exported = registry.export_zip(saved)  # and anyone may download
    before = registry.active_file.read_bytes() if registry.active_file.exists() else None
    refusals = {
        "activate a head version": lambda actor: registry.activate(saved, actor=actor),
        "roll back the head version": lambda actor: registry.rollback(actor=actor),
        "import a head version": lambda actor: registry.import_zip(exported, actor=actor),
        "delete a head version": lambda actor: registry.delete(saved, actor=actor),
    }
    for action, change in refusals.items():
        with pytest.raises(AccessDenied, match=f"only an operator may {action}; viewer is a viewer"):
            change(VIEWER)
        with pytest.raises(AccessDenied, match="no one is named as acting"):
            change(None)  # a page that forgets to say who acts is refused too
    assert registry.active_version() == "builtin"
    assert (registry.active_file.read_bytes() if registry.active_file.exists() else None) == before
    assert [c["version"] for c in registry.versions()] == [saved, "builtin"]


def test_an_operator_activation_is_recorded_with_who_and_when(registry):
    saved = registry.save(make_heads(1), make_card())
    registry.activate(saved, actor=OPERATOR)
    registry.rollback(actor=OPERATOR)
    events = registry.events()
    assert [(e["action"], e["version"], e["by"], e["role"]) for e in events] == [
        ("activated", saved, "alice", "operator"), ("rolled back to", "builtin", "alice", "operator")]
    assert all(e["at"].startswith("20") for e in events)
    assert PASSWORD not in registry.active_file.read_text()


def test_the_cli_acts_as_the_operator_of_its_own_home(tmp_path, monkeypatch):
    from core.cli import main
    from core.registry import open_registry, write_version_folder

    builtin = tmp_path / "default"
    write_version_folder(builtin, make_heads(seed=99), make_card())
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMSA_HEAD_DIR", str(builtin))
    saved = open_registry().save(make_heads(1), make_card())
    assert main(["activate", saved]) == 0
    event = open_registry().events()[-1]
    assert (event["action"], event["version"], event["by"]) == ("activated", saved, local_operator().name)


def test_a_viewer_cannot_read_server_folders(tmp_path):
    from app.uploads import server_folder

    (tmp_path / "pictures").mkdir()
    with pytest.raises(AccessDenied, match="only an operator may read folders on the server"):
        server_folder("pictures", tmp_path, VIEWER)
    with pytest.raises(AccessDenied):
        server_folder("pictures", tmp_path)
    assert server_folder("pictures", tmp_path, OPERATOR) == (tmp_path / "pictures").resolve()


# ----- the pages ------------------------------------------------------------------------------------

@pytest.fixture()
def fresh_home(app_env, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MMSA_HOME", str(home))
    return home


@pytest.fixture()
def with_password(fresh_home, password_hash, monkeypatch):
    """A shared server: an operator password is set; the limiter runs on a clock the test moves."""
    monkeypatch.setenv("MMSA_OPERATOR_PASSWORD_HASH", password_hash)
    clock = Clock()
    path = fresh_home / app_access.LIMITER_FILE
    monkeypatch.setattr(app_access, "limiter", lambda: RateLimiter(path, clock=clock))  # a fresh one each time, as after a restart
    return clock


def other_version():
    """A second version saved in the shared registry (by the machine's user), not active."""
    from core.registry import open_registry

    registry = open_registry()
    tensors, card = registry.load(registry.active_version())
    return registry.save({name: t + 0.01 for name, t in tensors.items()}, card, note="another version")


def current_viewer() -> Actor:
    """The actor a tab that has not signed in gets under the current configuration."""
    import os
    return actor_for(read_settings({}, os.environ), password_signed_in=False, user={})


def sign_in(at, password: str):
    at.text_input(key="home_access_password").input(password)
    next(b for b in at.button if b.label == "Sign in as operator").click().run()
    assert not at.exception, at.exception


def test_without_configuration_a_browser_on_this_machine_works_as_before(fresh_home):
    home = open_page("home")  # Streamlit's test harness runs the page in this process: this machine
    assert "You are **an operator**: no operator password or operator accounts are configured" in texts(home)
    assert "a browser on any other machine a viewer" in texts(home)
    other = other_version()
    at = open_page("correct")
    at.selectbox(key="correct_version").set_value(other).run()
    assert not button(at, "correct_activate").disabled and not button(at, "correct_delete").disabled
    button(at, "correct_activate").click().run()
    assert f"Version {other} is now active for everyone." in texts(at)
    table = next(d.value for d in at.dataframe if "last activated" in d.value.columns)
    row = table[table["version"] == other].iloc[0]
    assert row["active"] and row["last activated"].endswith("UTC by local user")


@pytest.mark.parametrize("address", ["203.0.113.7", None])  # another machine; an address the server cannot tell
def test_without_a_password_a_browser_on_another_machine_is_a_viewer(fresh_home, monkeypatch, address):
    from app_pages import common

    monkeypatch.setattr(common, "_client_address", lambda: address)
    home = open_page("home")
    assert ("You are **a viewer**: no operator password is configured, so only a browser on the server's own "
            "machine may act as operator") in texts(home)
    assert "set an operator password there" in texts(home)  # the proxy caveat on Home
    other = other_version()
    at = open_page("correct")
    at.selectbox(key="correct_version").set_value(other).run()
    assert button(at, "correct_activate").disabled and "Only operators can do this" in button(at, "correct_activate").help

    monkeypatch.setattr(common, "_client_address", lambda: "127.0.0.1")  # the same page from the server itself
    assert "You are **an operator**" in texts(open_page("home"))


def test_a_viewer_sees_the_controls_disabled_with_the_reason(with_password, app_env):
    other = other_version()
    home = open_page("home")
    assert "You are **a viewer**: not signed in as an operator." in texts(home)

    at = open_page("correct")
    at.selectbox(key="correct_version").set_value(other).run()
    for key in ("correct_activate", "correct_rollback", "correct_delete", "correct_import_button"):
        control = button(at, key)
        assert control.disabled, key
    assert "Only operators can do this: you are a viewer" in button(at, "correct_activate").help
    assert at.file_uploader(key="correct_import").disabled
    assert "Only operators can do this" in texts(at)

    batch = open_page("batch")
    batch.radio(key="batch_image_source").set_value("A folder on the server").run()
    assert batch.text_input(key="batch_images_server").disabled
    assert any("Only operators can do this" in i.value for i in batch.info)

    # The engine every tab shares refuses the viewer too, whatever the buttons say.
    from app_pages.common import engine
    from core.registry import open_registry

    viewer = current_viewer()
    with pytest.raises(AccessDenied, match="only an operator may activate"):
        engine().registry.activate(other, actor=viewer)
    with pytest.raises(AccessDenied):
        engine().registry.activate(other)
    assert open_registry().active_version() != other


def test_a_wrong_password_is_refused_and_slowed_and_the_right_one_makes_an_operator(with_password):
    clock = with_password
    at = open_page("home")
    sign_in(at, "not the password")
    assert at.error and at.error[0].value == "Wrong password. The next try is possible in 1 s."
    assert "You are **a viewer**" in texts(at)
    sign_in(at, PASSWORD)  # too soon: refused without being checked
    assert at.error and "Too many wrong passwords" in at.error[0].value
    assert "You are **a viewer**" in texts(at)
    clock.now += 1
    sign_in(at, PASSWORD)
    assert not at.error
    assert "You are **an operator**: signed in with the operator password." in texts(at)
    assert PASSWORD not in str(at.session_state.to_dict())  # the form cleared it; only a flag is kept
    button(at, "home_access_sign_out").click().run()
    assert "You are **a viewer**" in texts(at)


def test_a_reload_or_another_tab_does_not_reset_the_wait(with_password):
    clock = with_password
    sign_in(open_page("home"), "guess 1")
    clock.now += 1
    other_tab = open_page("home")  # a reload, a second tab, another address: the same account
    sign_in(other_tab, "guess 2")
    assert other_tab.error[0].value == "Wrong password. The next try is possible in 2 s."
    clock.now += 1
    reloaded = open_page("home")
    sign_in(reloaded, PASSWORD)
    assert "Too many wrong passwords: try again in 1 s." == reloaded.error[0].value
    assert "You are **a viewer**" in texts(reloaded)
    clock.now += 1
    sign_in(reloaded, PASSWORD)
    assert "You are **an operator**" in texts(reloaded)


def test_two_tabs_only_the_operators_activation_changes_what_both_are_served(with_password):
    from app_pages.common import engine
    from core.registry import open_registry

    other = other_version()
    served_before = open_registry().active_version()
    viewer, operator = open_page("home"), open_page("home")
    sign_in(operator, PASSWORD)

    # The viewer's attempt through the core API is refused clearly; nothing changes for anyone.
    viewer_actor = current_viewer()
    with pytest.raises(AccessDenied, match="only an operator may activate a head version; viewer is a viewer"):
        engine().registry.activate(other, actor=viewer_actor)
    for at in (viewer.run(), operator.run()):
        assert {m.label: m.value for m in at.metric}["Head version"] == served_before

    # The operator activates on the correction page of their tab.
    operator.switch_page("app_pages/correct.py").run()
    operator.selectbox(key="correct_version").set_value(other).run()
    assert not button(operator, "correct_activate").disabled
    button(operator, "correct_activate").click().run()
    assert f"Version {other} is now active for everyone." in texts(operator)

    operator.switch_page("app_pages/home.py").run()
    for at in (viewer.run(), operator):
        assert {m.label: m.value for m in at.metric}["Head version"] == other
    event = open_registry().events()[-1]
    assert (event["action"], event["version"], event["by"], event["role"]) == ("activated", other, "operator", "operator")


def test_a_listed_account_signed_in_with_st_login_is_an_operator(fresh_home):
    for email, role in (("alice@example.com", "an operator"), ("bob@example.com", "a viewer")):
        at = new_app()
        at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test"}
        at.secrets["access"] = {"operators": ["alice@example.com"]}
        at.user = {"is_logged_in": True, "email": email}
        at.run()
        assert not at.exception, at.exception
        assert f"You are **{role}**" in texts(at)
        assert any(b.label == "Sign out of your account" for b in at.button)
