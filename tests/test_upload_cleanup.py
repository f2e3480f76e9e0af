"""A visitor's uploads do not outlive their browser tab: each tab's folder is filed under its session,
and a sweep removes the folders of sessions that have ended (a zip may unpack to 2 GiB; closed tabs must
not fill the disk). The real server's side is in tests/test_access_live.py."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import uploads
from app.uploads import session_folder, sweep

NOW = 1_000_000.0
MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0


def folder_of(root: Path, owner: str, idle: float) -> Path:
    """An upload folder named ``owner`` (``<pid>-<session>``) holding a file, last used ``idle`` s ago."""
    folder = root / owner
    (folder / "batch").mkdir(parents=True)
    (folder / "batch" / "picture.jpg").write_bytes(b"x" * 1000)
    os.utime(folder, (NOW - idle, NOW - idle))
    return folder


def a_finished_process() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_closed_tabs_folder_goes_after_a_grace_and_a_live_tabs_stays(tmp_path):
    me = os.getpid()
    open_tab = folder_of(tmp_path, f"{me}-live", idle=2 * HOUR)           # open, idle: stays
    closed = folder_of(tmp_path, f"{me}-closed", idle=20 * MINUTE)        # closed 20 min ago: goes
    just_closed = folder_of(tmp_path, f"{me}-just_closed", idle=MINUTE)   # may still reconnect: stays for now
    removed = sweep(tmp_path, {"live"}, now=NOW)
    assert removed == [closed] and not closed.exists()
    assert open_tab.exists() and just_closed.exists()
    assert sweep(tmp_path, {"live"}, now=NOW + 15 * MINUTE) == [just_closed]
    assert sweep(tmp_path, {"live"}, now=NOW + 30 * DAY) == [] and open_tab.exists()  # a live tab's folder never goes
    assert list(tmp_path.iterdir()) == [open_tab]  # nothing half removed is left behind


def test_folders_of_a_server_that_has_stopped_go_and_another_running_servers_stay(tmp_path):
    stopped = folder_of(tmp_path, f"{a_finished_process()}-tab", idle=20 * MINUTE)
    running = folder_of(tmp_path, f"{os.getppid()}-tab", idle=2 * HOUR)  # another process still running
    forgotten = folder_of(tmp_path, f"{os.getppid()}-old", idle=2 * DAY)
    assert sorted(sweep(tmp_path, set(), now=NOW)) == sorted([stopped, forgotten])
    assert running.exists()


def test_when_the_server_cannot_list_its_sessions_only_a_day_untouched_removes_a_folder(tmp_path):
    me = os.getpid()
    yesterday = folder_of(tmp_path, f"{me}-a", idle=DAY + MINUTE)
    today = folder_of(tmp_path, f"{me}-b", idle=23 * HOUR)
    stray = folder_of(tmp_path, "not-ours", idle=2 * DAY)
    assert sorted(sweep(tmp_path, None, now=NOW)) == sorted([yesterday, stray])
    assert today.exists()


def test_a_removal_cut_short_is_finished_by_the_next_sweep(tmp_path):
    half = tmp_path / ".removing-123-abc-99"
    (half / "batch").mkdir(parents=True)
    sweep(tmp_path, set(), now=NOW)
    assert not half.exists()


def test_a_tabs_folder_is_filed_under_its_session_and_marked_in_use(tmp_path):
    folder = session_folder(tmp_path, "6f1c-uuid/../x", "batch")
    assert folder.parent.parent == tmp_path and folder.name == "batch"
    assert folder.parent.name == f"{os.getpid()}-6f1c_uuid_x"  # a session id is never a path
    assert time.time() - folder.parent.stat().st_mtime < 60


def test_the_page_helper_sweeps_ended_sessions_before_handing_out_a_folder(tmp_path, monkeypatch):
    """Through Streamlit: a tab asking for its upload folder removes the folder of a tab that ended."""
    monkeypatch.setenv("MMSA_HOME", str(tmp_path))
    from app_pages import common

    monkeypatch.setattr(uploads, "_last_sweep", None)
    monkeypatch.setattr(common, "_live_session_ids", lambda: {"test session id"})  # AppTest's one session
    ended = tmp_path / "uploads" / f"{os.getpid()}-ended_tab"
    (ended / "batch").mkdir(parents=True)
    os.utime(ended, (time.time() - HOUR, time.time() - HOUR))

    def page():
        import streamlit as st

        from app_pages.common import session_dir

        st.text(str(session_dir("batch")))

    at = AppTest.from_function(page).run()
    assert not at.exception, at.exception
    mine = Path(at.text[0].value)
    assert mine.is_dir() and mine.parent.parent == tmp_path / "uploads"
    assert not ended.exists()
