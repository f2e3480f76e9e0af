"""Put a user's images somewhere the batch scorer can read them: uploaded files, a zip, or a folder
on the server under the configured data root (operators only). Every path goes through core.io.paths,
so nothing lands or is read outside its folder.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

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
