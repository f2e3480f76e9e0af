"""Where things live: the user's data directory, the shipped default head, the shared data sets.

Everything can be moved with environment variables, so a test, a CLI run and the app can each use
their own folders:
- ``MMSA_HOME``       feature store, head registry, scoring history (default ``~/.cache/mmsa``)
- ``MMSA_DATA_ROOT``  the only server folder the batch page may read images from (default: the
                      shared data folder beside the checkout, else the home folder)
- ``MMSA_MVSA_DIR``   MVSA-Single (default ``../shared/data/mvsa_single`` beside the checkout)
- ``MMSA_HEAD_DIR``   a head version folder that replaces the shipped default (app and CLI alike)
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_HEAD_DIR = ASSETS / "models" / "default"
INT8_IMAGE_GRAPH_DIR = ASSETS / "models" / "efficientnet-lite0-int8"  # core.encoders.quantize writes it
EXAMPLES_DIR = ASSETS / "examples"


def default_head_dir() -> Path:
    """The registry's builtin head: the shipped default, unless MMSA_HEAD_DIR names another folder."""
    configured = os.environ.get("MMSA_HEAD_DIR")
    return Path(configured) if configured else DEFAULT_HEAD_DIR


class HomeUnavailable(OSError):
    """The data folder (MMSA_HOME) cannot be created or used."""


def home_dir() -> Path:
    """The user's data folder (``MMSA_HOME``, default ``~/.cache/mmsa``), created if missing."""
    home = Path(os.environ.get("MMSA_HOME") or Path.home() / ".cache" / "mmsa")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HomeUnavailable(f"the data folder {home} cannot be created ({error.strerror or error}); set "
                              "MMSA_HOME to a folder this user can write") from None
    return home


def feature_store_path() -> Path:
    """The SQLite feature store's file under the home folder."""
    return home_dir() / "features.sqlite"


def registry_root() -> Path:
    """The head registry's root folder under the home folder."""
    return home_dir() / "heads"


def shared_data_dir() -> Path:
    """The shared data folder beside the checkout (``../shared/data``)."""
    return REPO_ROOT.parent / "shared" / "data"


def mvsa_dir() -> Path:
    """MVSA-Single's folder (``MMSA_MVSA_DIR``, default under the shared data folder)."""
    return Path(os.environ.get("MMSA_MVSA_DIR") or shared_data_dir() / "mvsa_single")


def data_root() -> Path:
    """The only server folder the batch page may read images from (``MMSA_DATA_ROOT``, else the shared data folder
    if present, else the home folder)."""
    configured = os.environ.get("MMSA_DATA_ROOT")
    if configured:
        return Path(configured)
    return shared_data_dir() if shared_data_dir().is_dir() else home_dir()


def resolve_repo_path(path: str | None) -> Path | None:
    """Cards store repo-relative paths (so a checkout can move); turn one back into a real path."""
    if not path:
        return None
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate
