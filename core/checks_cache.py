"""Once-per-machine checks remembered in a small JSON file under ``$MMSA_HOME``.

The int8 image graph check and the autocast precision check both run a sample through two numeric
paths and keep the verdict per graph, CPU and library versions. The file is only a cache: missing or
damaged means the check runs again, and a disk that cannot take the write leaves no partial file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core import config

Check = TypeVar("Check")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remembered_check(file_name: str, key: str, run: Callable[[], Check], kind: type[Check]) -> Check:
    """``kind(**stored)`` when ``$MMSA_HOME/file_name`` holds a verdict under ``key``; otherwise ``run()``,
    stored under ``key`` (``as_dict()`` of the result) and returned."""
    path = config.home_dir() / file_name
    known = _read(path).get(key)
    if isinstance(known, dict):
        try:
            return kind(**known)
        except TypeError:  # written by another version of the check: run it again
            pass
    result = run()
    cache = _read(path)
    cache[key] = result.as_dict()
    temporary = path.with_name(f"{file_name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(cache, indent=1))
        os.replace(temporary, path)
    except OSError:  # a read-only or full disk: the check simply runs again next time
        temporary.unlink(missing_ok=True)
    return result
