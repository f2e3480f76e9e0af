"""An operator's story: every setting is an environment variable read in one place and listed in the
README, so nothing changes behaviour behind the manual's back."""
from __future__ import annotations

import re
from pathlib import Path

from core import config

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = [*ROOT.glob("core/**/*.py"), *ROOT.glob("app/**/*.py"), *ROOT.glob("app_pages/**/*.py"),
           ROOT / "streamlit_app.py"]


def declared_variables() -> set[str]:
    return {value for name, value in vars(config).items() if name.endswith("_ENV") and isinstance(value, str)}


def test_only_the_config_module_reads_the_environment():
    readers = [path.relative_to(ROOT).as_posix() for path in PROGRAM
               if path.name != "config.py" and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
               and re.search(r"MMSA_", path.read_text())]
    assert readers == []
    mentioned = set()
    for path in PROGRAM:
        mentioned |= set(re.findall(r"\bMMSA_[A-Z_]+", path.read_text()))
    assert mentioned <= declared_variables(), mentioned - declared_variables()


def test_the_readme_lists_every_variable():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `(MMSA_[A-Z_]+)` \|", readme, flags=re.M))
    assert listed == declared_variables()


def test_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("MMSA_ONNX", "off")
    monkeypatch.setenv("MMSA_ORT_THREADS", "3")
    monkeypatch.setenv("MMSA_RAY_WORKERS", "x")
    monkeypatch.setenv("MMSA_DEVICE", "  cpu ")
    assert config.onnx_enabled() is False
    assert config.ort_threads_setting() == 3
    assert config.ray_workers() == 1  # not a number: the default, not a crash
    assert config.device_setting() == "cpu"
    config.set_ort_threads(1)
    try:
        assert config.ort_threads_setting() == 1  # a Ray actor's share wins over the environment
    finally:
        config.set_ort_threads(None)
    monkeypatch.setenv("MMSA_OPERATORS", "a@example.com")
    monkeypatch.delenv("MMSA_OPERATOR_PASSWORD_HASH", raising=False)
    assert config.access_environment() == {"MMSA_OPERATORS": "a@example.com"}
