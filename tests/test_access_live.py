"""What only a real `streamlit run` server can show, since Streamlit's test harness has no browser
connection and no session manager:
- with no operator password, a server listening on every interface makes a browser on its own machine
  the operator and a browser that reaches it over the network a viewer (the page reads the connection's
  real address, not a stand-in);
- a tab's upload folder is filed under its live session, and the folder of a session the server no
  longer knows is removed when a tab next asks for its own.

A small probe page (it imports the pages' helpers, not the model, so it starts in seconds) shows what
the server sees; headless Chromium opens it once through 127.0.0.1 and once through this machine's
network address. Skips when Chromium or Playwright is missing, or when the machine has no network
address other than loopback.
"""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

from tests.browser import BROWSER_ARGS, CHROMIUM, streamlit_server

ROOT = Path(__file__).resolve().parents[1]
PROBE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from app_pages import common
common.uploads.SWEEP_EVERY_S = 0  # the probe sweeps on every run, not once a minute
from streamlit.runtime.scriptrunner import get_script_run_ctx
st.text(f"address={{common._client_address()}} role={{common.current_actor().role.value}}")
folder = common.session_dir("probe")
(folder / "picture.bin").write_bytes(b"x" * 1000)
live = common._live_session_ids() or set()
st.text(f"uploads={{folder.relative_to(common.uploads.uploads_root()).as_posix()}} "
        f"live={{get_script_run_ctx().session_id in live}}")
"""


def _network_address() -> str | None:
    """This machine's address on its default route (no packet is sent), None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("MMSA_OPERATOR_PASSWORD_HASH", "MMSA_OPERATORS")}
    env.update(MMSA_HOME=str(folder / "home"), PYTHONUNBUFFERED="1")
    with streamlit_server(folder / "probe.py", env=env, cwd=folder, log_path=folder / "streamlit.log",
                          address="0.0.0.0") as (port, proc):
        yield {"port": port, "pid": proc.pid, "home": folder / "home"}


def _seen_as(sync_playwright, url: str) -> tuple[str, str]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page()
            tab.goto(url)
            lines = [tab.get_by_text(re.compile(f"^{start}=")).first for start in ("address", "uploads")]
            for line in lines:
                line.wait_for(timeout=60_000)
            return lines[0].inner_text(), lines[1].inner_text()
        finally:
            browser.close()


def test_without_a_password_only_the_servers_own_machine_gets_the_operator(sync_playwright, open_server):
    network = _network_address()
    port = open_server["port"]
    assert _seen_as(sync_playwright, f"http://127.0.0.1:{port}")[0] == "address=127.0.0.1 role=operator"
    if network is None:
        pytest.skip("this machine has no network address besides loopback to connect from")
    assert _seen_as(sync_playwright, f"http://{network}:{port}")[0] == f"address={network} role=viewer"


def test_the_upload_folder_of_a_session_the_server_no_longer_knows_is_removed(sync_playwright, open_server):
    uploads = open_server["home"] / "uploads"
    ended = uploads / f"{open_server['pid']}-0a1b2c3d" / "batch"  # a tab of this server that closed long ago
    ended.mkdir(parents=True)
    (ended / "images.zip-contents").write_bytes(b"x" * 100_000)
    an_hour_ago = time.time() - 3600
    os.utime(ended.parent, (an_hour_ago, an_hour_ago))

    _, line = _seen_as(sync_playwright, f"http://127.0.0.1:{open_server['port']}")
    folder, live = line.removeprefix("uploads=").split(" live=")
    assert live == "True" and folder.startswith(f"{open_server['pid']}-") and folder.endswith("/probe")
    assert (uploads / folder / "picture.bin").is_file()  # this tab's own folder stays
    assert not ended.parent.exists()
