"""Keep every user-named file inside the folder it belongs to.

Three ways a user can point us at files: a path in a CSV cell, a zip upload, a folder on the
server. Each is checked here so nothing outside the chosen folder is ever read or written:
no `../` escapes, no absolute paths, no symlinks out, no zip-slip, no zip bombs.
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from core.errors import InputError

_COPY_CHUNK = 1 << 20
# Finder adds these to every zip it makes; they are metadata, not user files.
_MAC_JUNK_PREFIX = "__MACOSX/"
_MAC_JUNK_NAMES = {".DS_Store"}


class UnsafePathError(InputError):
    """A path or archive we refuse to touch; the message says which name and why."""


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve `relative` under `root`, refusing anything that would land outside it.

    Refuses empty names, absolute paths (POSIX or Windows), `..` escapes and symlinks that
    lead out of `root`. Backslashes are read as folder separators, since CSVs made on Windows
    use them. The returned path is fully resolved and need not exist.
    """
    name = str(relative).strip()
    if not name:
        raise UnsafePathError("empty file name")
    if "\0" in name:
        raise UnsafePathError(f"file name {name!r} contains a NUL character")
    portable = name.replace("\\", "/")
    if PurePosixPath(portable).is_absolute() or PureWindowsPath(name).drive:
        raise UnsafePathError(f"absolute path {name!r} is not allowed; give a path relative to the folder")
    if os.path.normpath(portable).split("/")[0] == "..":
        raise UnsafePathError(f"path {name!r} goes outside the folder with '..'")
    root = Path(root).resolve()
    # resolve() follows every symlink that exists, so a link pointing out is caught here.
    resolved = (root / portable).resolve()
    if resolved == root:
        raise UnsafePathError(f"path {name!r} names the folder itself, not a file")
    if not resolved.is_relative_to(root):
        raise UnsafePathError(f"path {name!r} is a symlink leading outside the folder")
    return resolved


def folder_under_root(folder: str | Path, data_root: Path) -> Path:
    """Check a server folder typed by a user: it must exist and lie under `data_root`.

    A relative folder is read relative to `data_root`. Raises UnsafePathError when it lies
    outside, NotADirectoryError when it does not exist or is not a folder.
    """
    root = Path(data_root).resolve()
    text = str(folder).strip()
    if not text:
        raise UnsafePathError("empty folder name")
    resolved = (root / text).resolve()  # an absolute `folder` replaces root here, as intended
    if not resolved.is_relative_to(root):
        raise UnsafePathError(f"folder {text!r} is outside the data folder {root}")
    if not resolved.is_dir():
        raise NotADirectoryError(f"folder {text!r} does not exist or is not a folder")
    return resolved


def extract_zip(
    source: Path | bytes | BinaryIO,
    target: Path,
    *,
    max_files: int = 20_000,
    max_total_bytes: int = 2 * 2**30,
) -> Path:
    """Extract a user's zip into `target` after checking every entry; return the resolved target.

    Every entry is checked before anything is written: names must stay inside `target`
    (no zip-slip, no absolute names), symlink entries are refused, and the file count and
    declared total size must be within the caps. The declared sizes can lie, so the bytes
    actually written are counted too; if the cap is crossed the files written so far are
    removed. `__MACOSX/` and `.DS_Store` entries are skipped.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    try:
        with zipfile.ZipFile(_as_zip_input(source)) as archive:
            plan = _checked_plan(archive, target, max_files, max_total_bytes)
            _write_plan(archive, plan, max_total_bytes)
    except zipfile.BadZipFile as error:
        raise UnsafePathError(f"not a valid zip file ({error})") from None
    except OSError as error:  # e.g. an entry named like a file that another entry uses as a folder
        raise UnsafePathError(f"could not extract the zip: {error}") from None
    return target


def _as_zip_input(source: Path | bytes | BinaryIO):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return source


def _is_junk(name: str) -> bool:
    return name.startswith(_MAC_JUNK_PREFIX) or PurePosixPath(name).name in _MAC_JUNK_NAMES


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix zips keep st_mode in the high 16 bits of external_attr.
    return stat.S_ISLNK(info.external_attr >> 16)


def _checked_plan(
    archive: zipfile.ZipFile, target: Path, max_files: int, max_total_bytes: int
) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Every entry we will write, paired with its destination; raises before anything is written."""
    entries = [info for info in archive.infolist() if not _is_junk(info.filename)]
    files = [info for info in entries if not info.is_dir()]
    if len(files) > max_files:
        raise UnsafePathError(f"zip holds {len(files):,} files, over the {max_files:,} file limit")
    declared = sum(info.file_size for info in files)
    if declared > max_total_bytes:
        raise UnsafePathError(
            f"zip would unpack to {_size(declared)}, over the {_size(max_total_bytes)} limit"
        )
    plan = []
    for info in entries:
        if info.is_dir() and os.path.normpath(info.filename) == ".":
            continue  # a "./" entry is the target itself
        if _is_symlink(info):
            raise UnsafePathError(f"zip entry {info.filename!r} is a symlink; symlinks are not extracted")
        if info.flag_bits & 0x1:
            raise UnsafePathError(f"zip entry {info.filename!r} is password-protected")
        try:
            destination = resolve_inside(target, info.filename)
        except UnsafePathError as error:
            raise UnsafePathError(f"zip entry refused: {error}") from None
        plan.append((info, destination))
    return plan


def _write_plan(archive: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, Path]], max_total_bytes: int) -> None:
    """Write the checked entries, counting real bytes; undo our own files if the cap is crossed."""
    written_files: list[Path] = []
    total = 0
    try:
        for info, destination in plan:
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, destination.open("wb") as sink:
                written_files.append(destination)
                while chunk := source.read(_COPY_CHUNK):
                    total += len(chunk)
                    if total > max_total_bytes:
                        raise UnsafePathError(
                            f"zip unpacks to more than {_size(max_total_bytes)} "
                            f"(its headers understate the sizes); nothing was kept"
                        )
                    sink.write(chunk)
    except BaseException:
        for path in written_files:
            path.unlink(missing_ok=True)
        raise


def _size(count: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
