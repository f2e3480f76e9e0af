"""Where things live and how the program is set up: the one module that reads the environment.

Every ``MMSA_*`` variable is read here and nowhere else (the README's table lists them all), so a test,
a CLI run and the app can each use their own folders and settings:
- ``MMSA_HOME``       feature store, head registry, scoring history (default ``~/.cache/mmsa``)
- ``MMSA_FEATURE_STORE_MAX_BYTES``   the feature store's size bound (default 2 GiB)
- ``MMSA_DATA_ROOT``  the only server folder the batch page may read images from (default: the
                      shared data folder beside the checkout, else the home folder)
- ``MMSA_MVSA_DIR``   MVSA-Single (default ``../shared/data/mvsa_single`` beside the checkout)
- ``MMSA_HEAD_DIR``   a head version folder that replaces the shipped default (app and CLI alike)
- ``MMSA_DEVICE``, ``MMSA_PRECISION``           where and in which precision the encoders run
- ``MMSA_ONNX``, ``MMSA_ORT_THREADS``           ONNX Runtime on or off; its threads per session
- ``MMSA_OPERATOR_PASSWORD_HASH``, ``MMSA_OPERATORS``   who may change the model in the app
- ``MMSA_RAY_ADDRESS``, ``MMSA_RAY_WORKERS``    the Ray cluster the batch page offers, and its actors
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_HEAD_DIR = ASSETS / "models" / "default"
INT8_IMAGE_GRAPH_DIR = ASSETS / "models" / "efficientnet-lite0-int8"  # core.encoders.quantize writes it
EXAMPLES_DIR = ASSETS / "examples"


HOME_ENV = "MMSA_HOME"
FEATURE_STORE_MAX_BYTES_ENV = "MMSA_FEATURE_STORE_MAX_BYTES"
DATA_ROOT_ENV = "MMSA_DATA_ROOT"
MVSA_DIR_ENV = "MMSA_MVSA_DIR"
HEAD_DIR_ENV = "MMSA_HEAD_DIR"
DEVICE_ENV = "MMSA_DEVICE"
PRECISION_ENV = "MMSA_PRECISION"
ONNX_ENV = "MMSA_ONNX"
ORT_THREADS_ENV = "MMSA_ORT_THREADS"
OPERATOR_PASSWORD_HASH_ENV = "MMSA_OPERATOR_PASSWORD_HASH"
OPERATORS_ENV = "MMSA_OPERATORS"
RAY_ADDRESS_ENV = "MMSA_RAY_ADDRESS"
RAY_WORKERS_ENV = "MMSA_RAY_WORKERS"


def _setting(name: str) -> str | None:
    """An environment variable's value with surrounding blanks removed; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def default_head_dir() -> Path:
    """The registry's builtin head: the shipped default, unless MMSA_HEAD_DIR names another folder."""
    configured = _setting(HEAD_DIR_ENV)
    return Path(configured) if configured else DEFAULT_HEAD_DIR


class HomeUnavailable(OSError):
    """The data folder (MMSA_HOME) cannot be created or used."""


def home_dir() -> Path:
    """The user's data folder (``MMSA_HOME``, default ``~/.cache/mmsa``), created if missing."""
    home = Path(_setting(HOME_ENV) or Path.home() / ".cache" / "mmsa")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HomeUnavailable(f"the data folder {home} cannot be created ({error.strerror or error}); set "
                              "MMSA_HOME to a folder this user can write") from None
    return home


def feature_store_path() -> Path:
    """The SQLite feature store's file under the home folder."""
    return home_dir() / "features.sqlite"


DEFAULT_FEATURE_STORE_MAX_BYTES = 2 * 2 ** 30
_SIZE_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def feature_store_max_bytes() -> int:
    """``MMSA_FEATURE_STORE_MAX_BYTES``: the feature store's size bound in bytes (``500M``, ``2G``, ``2GiB``
    and plain byte counts are read; K/M/G/T count in 1024s); ``0`` lifts the bound. Unset or unreadable:
    2 GiB. Past the bound the least recently used vectors are dropped (``core.features.store``)."""
    value = (_setting(FEATURE_STORE_MAX_BYTES_ENV) or "").lower().replace(" ", "").removesuffix("b").removesuffix("i")
    number, unit = value.rstrip("kmgt"), value[len(value.rstrip("kmgt")):]
    if not number.isdigit() or unit not in _SIZE_UNITS:
        return DEFAULT_FEATURE_STORE_MAX_BYTES
    return int(number) * _SIZE_UNITS[unit]


def registry_root() -> Path:
    """The head registry's root folder under the home folder."""
    return home_dir() / "heads"


def shared_data_dir() -> Path:
    """The shared data folder beside the checkout (``../shared/data``)."""
    return REPO_ROOT.parent / "shared" / "data"


def mvsa_dir() -> Path:
    """MVSA-Single's folder (``MMSA_MVSA_DIR``, default under the shared data folder)."""
    return Path(_setting(MVSA_DIR_ENV) or shared_data_dir() / "mvsa_single")


def data_root() -> Path:
    """The only server folder the batch page may read images from (``MMSA_DATA_ROOT``, else the shared data folder
    if present, else the home folder)."""
    configured = _setting(DATA_ROOT_ENV)
    if configured:
        return Path(configured)
    return shared_data_dir() if shared_data_dir().is_dir() else home_dir()


def resolve_repo_path(path: str | None) -> Path | None:
    """Cards store repo-relative paths (so a checkout can move); turn one back into a real path."""
    if not path:
        return None
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate


def device_setting() -> str | None:
    """``MMSA_DEVICE``: auto, cpu, cuda or cuda:N (None when unset; ``core.device`` decides)."""
    return _setting(DEVICE_ENV)


def precision_setting() -> str | None:
    """``MMSA_PRECISION``: auto, fp32, fp16 or bf16 (None when unset; ``core.scoring.precision`` decides)."""
    return _setting(PRECISION_ENV)


def onnx_enabled() -> bool:
    """ONNX Runtime serves the encoders unless ``MMSA_ONNX`` is 0 / false / no / off."""
    return (_setting(ONNX_ENV) or "1").lower() not in ("0", "false", "no", "off")


_ort_threads_in_process: int | None = None


def set_ort_threads(threads: int | None) -> None:
    """Give every ONNX Runtime session this process creates from now on ``threads`` threads (a Ray actor
    holding a share of a node's CPUs); None returns to ``MMSA_ORT_THREADS`` or the default."""
    global _ort_threads_in_process
    _ort_threads_in_process = None if threads is None else max(1, int(threads))


def ort_threads_setting() -> int | None:
    """Threads per ONNX Runtime session asked for by this process or by ``MMSA_ORT_THREADS`` (a positive
    integer); None leaves the choice to ``core.encoders.onnx``."""
    if _ort_threads_in_process is not None:
        return _ort_threads_in_process
    value = _setting(ORT_THREADS_ENV) or ""
    return int(value) if value.isdigit() and int(value) > 0 else None


def access_environment() -> dict[str, str]:
    """The operator settings given in the environment (``MMSA_OPERATOR_PASSWORD_HASH``, ``MMSA_OPERATORS``),
    for ``app.access.read_settings``; unset ones are left out."""
    names = (OPERATOR_PASSWORD_HASH_ENV, OPERATORS_ENV)
    return {name: value for name in names if (value := _setting(name)) is not None}


def ray_address() -> str | None:
    """``MMSA_RAY_ADDRESS``: the Ray cluster the batch page offers (auto, HEAD_IP:6379 or local); None: none."""
    return _setting(RAY_ADDRESS_ENV)


def ray_workers() -> int:
    """``MMSA_RAY_WORKERS``: scoring actors per cluster run from the batch page (default 1)."""
    value = _setting(RAY_WORKERS_ENV) or "1"
    return max(1, int(value)) if value.isdigit() else 1
