"""With no operator password, a real `streamlit run` server listening on every interface makes a browser
on its own machine the operator and a browser that reaches it over the network a viewer: the page reads
the connection's real address, not a stand-in.

A small probe page (it imports the pages' helpers, not the model, so it starts in seconds) shows the
address the server sees and the role it gives; headless Chromium opens it once through 127.0.0.1 and
once through this machine's network address. Skips when Chromium or Playwright is missing, or when the
machine has no network address other than loopback.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_browser_e2e import BROWSER_ARGS, CHROMIUM, _free_port, sync_playwright  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
PROBE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from app_pages import common
st.text(f"address={{common._client_address()}} role={{common.current_actor().role.value}}")
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
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MMSA_OPERATOR_PASSWORD_HASH", "MMSA_OPERATORS")}
    env.update(MMSA_HOME=str(folder / "home"), PYTHONUNBUFFERED="1")
    log_path = folder / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(folder / "probe.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "0.0.0.0", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"streamlit did not start:\n{log_path.read_text()}")
                    time.sleep(0.5)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _seen_as(sync_playwright, url: str) -> str:  # noqa: F811 - the fixture's value
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page()
            tab.goto(url)
            line = tab.get_by_text(re.compile(r"^address=")).first
            line.wait_for(timeout=60_000)
            return line.inner_text()
        finally:
            browser.close()


def test_without_a_password_only_the_servers_own_machine_gets_the_operator(sync_playwright, open_server):  # noqa: F811
    network = _network_address()
    assert _seen_as(sync_playwright, f"http://127.0.0.1:{open_server}") == "address=127.0.0.1 role=operator"
    if network is None:
        pytest.skip("this machine has no network address besides loopback to connect from")
    assert _seen_as(sync_playwright, f"http://{network}:{open_server}") == f"address={network} role=viewer"
