"""Put a user's images somewhere the batch scorer can read them: uploaded files, a zip, or a folder
on the server under the configured data root (operators only). Every path goes through core.io.paths,
so nothing lands or is read outside its folder.

Each browser tab's uploads live in its own folder, ``$MMSA_HOME/uploads/<server pid>-<session id>/``,
and go when the tab's session has ended: Streamlit calls nothing when a session ends, so every so often
(``SWEEP_EVERY_S``) a tab that asks for its folder first sweeps the others (``sweep``).
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePosixPath

from core import config
from core.access import SERVER_FOLDERS, Actor, require
from core.io.images import IMAGE_TYPES
from core.io.paths import UnsafePathError, extract_zip, folder_under_root, resolve_inside

IMAGE_SUFFIXES = {f".{kind}" for kind in IMAGE_TYPES}


def save_uploaded_files(files: Iterable[tuple[str, bytes]], target: Path) -> tuple[Path, list[str]]:
    """Write (name, bytes) uploads under ``target`` keeping their relative folders (a folder upload
    sends ``images/1.jpg``-style names). Returns (images root, skipped names with reasons). When every
    file sits in one top folder, that folder is the root, so CSV cells can name ``1.jpg``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name, data in files:
        try:
            path = resolve_inside(target, name)
        except UnsafePathError as error:
            skipped.append(f"{name}: {error}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(PurePosixPath(str(name).replace("\\", "/")))
    return _common_root(target, written), skipped


def extract_images_zip(data: bytes, target: Path) -> Path:
    """Extract a zip of images (checked by core.io.paths.extract_zip); returns the images root."""
    root = extract_zip(data, target)
    names = [PurePosixPath(p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]
    return _common_root(root, names)


def server_folder(folder: str, data_root: Path, actor: Actor | None = None) -> Path:
    """A folder typed by an operator, accepted only under ``data_root`` (raises AccessDenied for a
    viewer or when no actor is named, UnsafePathError / NotADirectoryError with a message for the page)."""
    require(actor, SERVER_FOLDERS)
    return folder_under_root(folder, data_root)


def _common_root(root: Path, names: list[PurePosixPath]) -> Path:
    tops = {n.parts[0] for n in names if len(n.parts) > 1}
    if names and len(tops) == 1 and all(len(n.parts) > 1 for n in names):
        return (root / tops.pop()).resolve()
    return Path(root).resolve()


def count_images(root: Path, limit: int = 100_000) -> int:
    count = 0
    for path in Path(root).rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            count += 1
            if count >= limit:
                break
    return count


# ---- each tab's upload folder, and its removal once the tab is gone

UPLOADS_DIR = "uploads"
SWEEP_EVERY_S = 60.0          # at most one sweep a minute per server process
GONE_GRACE_S = 10 * 60.0      # a session the server no longer knows: its folder goes after this much quiet
IDLE_LIMIT_S = 24 * 3600.0    # when the server cannot say which sessions live: untouched this long, it goes
_REMOVING = ".removing-"
_last_sweep: float | None = None
_sweep_lock = threading.Lock()


def uploads_root() -> Path:
    """Where every tab's upload folder lives (``$MMSA_HOME/uploads``)."""
    return config.home_dir() / UPLOADS_DIR


def _safe_id(session_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(session_id))[:64] or "_"


def session_folder(root: Path, session_id: str, purpose: str) -> Path:
    """This tab's folder for one purpose (``batch``, ``correct``…), created if missing. Its session's
    folder is touched, so the sweep sees the tab as in use."""
    session = Path(root) / f"{os.getpid()}-{_safe_id(session_id)}"
    folder = session / _safe_id(purpose)
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(session)
    return folder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 checks, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep(root: Path, live_sessions: Collection[str] | None, *, now: float | None = None,
          gone_grace: float = GONE_GRACE_S, idle_limit: float = IDLE_LIMIT_S) -> list[Path]:
    """Remove the upload folders of browser tabs that are gone; returns those removed.

    A folder of this server process goes once its session is not in ``live_sessions`` (the ids the server
    still knows, a disconnected but resumable tab included) and it has been untouched for ``gone_grace``
    s. A folder of a server process that has exited goes after the same grace. When the sessions are
    unknown (``live_sessions`` None), or the folder belongs to another running server process, only
    ``idle_limit`` s untouched removes it. Folders that cannot be read or removed are left for next time."""
    root = Path(root)
    now = time.time() if now is None else now
    live = None if live_sessions is None else {_safe_id(s) for s in live_sessions}
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for folder in entries:
        name = folder.name
        if name.startswith(_REMOVING):  # a removal cut short earlier
            shutil.rmtree(folder, ignore_errors=True)
            continue
        pid, _, session = name.partition("-")
        try:
            idle = now - folder.stat().st_mtime
        except OSError:
            continue
        if not pid.isdigit():
            gone = idle > idle_limit
        elif int(pid) == os.getpid():
            gone = idle > idle_limit if live is None else (session not in live and idle > gone_grace)
        else:
            gone = idle > idle_limit or (idle > gone_grace and not _process_alive(int(pid)))
        if gone and _remove(folder):
            removed.append(folder)
    return removed


def _remove(folder: Path) -> bool:
    # Renamed first, so no tab ever writes into a folder half removed, and a crash mid-way leaves a name
    # the next sweep knows to finish.
    doomed = folder.with_name(f"{_REMOVING}{folder.name}-{time.time_ns()}")
    try:
        folder.rename(doomed)
    except OSError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def sweep_now_and_then(root: Path, live_sessions: Callable[[], Collection[str] | None]) -> list[Path]:
    """``sweep`` at most once every ``SWEEP_EVERY_S`` s in this process (``live_sessions`` is asked only
    then); a sweep that another thread is running is not waited for."""
    global _last_sweep
    recent = _last_sweep is not None and time.monotonic() - _last_sweep < SWEEP_EVERY_S
    if recent or not _sweep_lock.acquire(blocking=False):
        return []
    try:
        _last_sweep = time.monotonic()
        return sweep(root, live_sessions())
    finally:
        _sweep_lock.release()
