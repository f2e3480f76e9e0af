"""Shared set-up for the AppTest suites (imported by tests/test_app_*.py; holds no tests itself).

Each suite points the app at its own MMSA_HOME, at the fixture head (MMSA_HEAD_DIR) instead of the
shipped default, and at a missing MVSA folder so the correction page uses the project's example
pairs as its reference set.
"""
from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
TIMEOUT = 60  # the first run of a process loads the encoders


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, trained_head):
    home = tmp_path_factory.mktemp("app_home")
    data_root = tmp_path_factory.mktemp("data_root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMSA_HOME", str(home))
        patch.setenv("MMSA_HEAD_DIR", str(trained_head))
        patch.setenv("MMSA_MVSA_DIR", str(home / "no-mvsa-here"))
        patch.setenv("MMSA_DATA_ROOT", str(data_root))
        yield {"home": home, "data_root": data_root, "head": trained_head}


def new_app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def open_page(page: str):
    at = new_app().run()
    assert not at.exception, at.exception
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def button(at, key: str):
    return next(b for b in at.button if b.key == key)


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "title",
                                  "subheader") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)
