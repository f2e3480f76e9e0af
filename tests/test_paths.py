"""Stories of users naming files and uploading zips; nothing may land or be read outside its folder."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from core.io.paths import UnsafePathError, extract_zip, folder_under_root, resolve_inside


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "tom.jpg").write_bytes(b"jpg")
    (tmp_path / "secret.txt").write_text("do not read")
    return folder


def make_zip(entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, link_target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, link_target)
    return buffer.getvalue()


# --- paths in a CSV's image column -----------------------------------------------------------

def test_a_relative_image_path_resolves_inside_the_folder(images):
    assert resolve_inside(images, "cats/tom.jpg") == (images / "cats" / "tom.jpg").resolve()


def test_a_windows_style_path_from_excel_still_works(images):
    assert resolve_inside(images, "cats\\tom.jpg") == (images / "cats" / "tom.jpg").resolve()


def test_a_missing_file_still_resolves_so_the_caller_can_report_it_as_missing(images):
    assert resolve_inside(images, "cats/nobody.jpg").parent == (images / "cats").resolve()


def test_dot_dot_that_stays_inside_is_fine(images):
    assert resolve_inside(images, "cats/../cats/tom.jpg").name == "tom.jpg"


@pytest.mark.parametrize("name", ["../secret.txt", "cats/../../secret.txt", "..\\secret.txt", ".."])
def test_a_path_climbing_out_with_dot_dot_is_refused(images, name):
    with pytest.raises(UnsafePathError, match=r"outside the folder with '\.\.'"):
        resolve_inside(images, name)


@pytest.mark.parametrize("name", ["/etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share\\x.jpg", "c:/x.jpg"])
def test_an_absolute_path_is_refused(images, name):
    with pytest.raises(UnsafePathError, match="absolute path"):
        resolve_inside(images, name)


@pytest.mark.parametrize("name", ["", "   ", ".", "cats/.."])
def test_an_empty_name_or_the_folder_itself_is_refused(images, name):
    with pytest.raises(UnsafePathError, match="empty file name|folder itself"):
        resolve_inside(images, name)


def test_a_symlink_leading_out_of_the_folder_is_refused(images):
    (images / "sneaky.jpg").symlink_to(images.parent / "secret.txt")
    (images / "elsewhere").symlink_to(images.parent)
    with pytest.raises(UnsafePathError, match="symlink leading outside"):
        resolve_inside(images, "sneaky.jpg")
    with pytest.raises(UnsafePathError, match="symlink leading outside"):
        resolve_inside(images, "elsewhere/secret.txt")


def test_a_symlink_that_stays_inside_is_allowed(images):
    (images / "alias.jpg").symlink_to(images / "cats" / "tom.jpg")
    assert resolve_inside(images, "alias.jpg") == (images / "cats" / "tom.jpg").resolve()


def test_a_nul_byte_in_a_name_is_refused(images):
    with pytest.raises(UnsafePathError, match="NUL"):
        resolve_inside(images, "tom.jpg\0.png")


# --- zip uploads -----------------------------------------------------------------------------

def test_a_user_uploads_a_zip_of_images_and_finds_them_extracted(tmp_path):
    data = make_zip({"a.jpg": b"A", "sub/b.png": b"B", "__MACOSX/._a.jpg": b"junk", "sub/.DS_Store": b"junk"})
    target = extract_zip(data, tmp_path / "out")
    assert (target / "a.jpg").read_bytes() == b"A"
    assert (target / "sub" / "b.png").read_bytes() == b"B"
    assert not (target / "__MACOSX").exists() and not (target / "sub" / ".DS_Store").exists()


def test_a_zip_can_come_from_a_path_or_an_open_file(tmp_path):
    (tmp_path / "up.zip").write_bytes(make_zip({"x.jpg": b"X"}))
    assert (extract_zip(tmp_path / "up.zip", tmp_path / "one") / "x.jpg").exists()
    with open(tmp_path / "up.zip", "rb") as handle:
        assert (extract_zip(handle, tmp_path / "two") / "x.jpg").exists()


@pytest.mark.parametrize("evil", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_a_zip_slip_entry_is_refused_and_nothing_is_written(tmp_path, evil):
    data = make_zip({"good.jpg": b"G", evil: b"pwned"})
    with pytest.raises(UnsafePathError, match="zip entry refused"):
        extract_zip(data, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # checked before anything is written


def test_a_symlink_entry_in_a_zip_is_refused(tmp_path):
    data = make_zip({"good.jpg": b"G"}, symlinks={"link.jpg": "/etc/passwd"})
    with pytest.raises(UnsafePathError, match="symlink"):
        extract_zip(data, tmp_path / "out")


def test_a_zip_cannot_write_through_a_symlink_already_in_the_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "door").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="symlink leading outside"):
        extract_zip(make_zip({"door/evil.txt": b"x"}), target)
    assert not (tmp_path / "evil.txt").exists()


def test_a_zip_with_too_many_files_is_refused(tmp_path):
    data = make_zip({f"{i}.jpg": b"" for i in range(11)})
    with pytest.raises(UnsafePathError, match="11 files, over the 10 file limit"):
        extract_zip(data, tmp_path / "out", max_files=10)


def test_a_zip_bomb_is_refused_from_its_declared_sizes(tmp_path):
    data = make_zip({"bomb.bin": b"\0" * 5_000_000})  # compresses to a few KB
    assert len(data) < 50_000
    with pytest.raises(UnsafePathError, match=r"unpack to 4.8 MB, over the 1.0 MB limit"):
        extract_zip(data, tmp_path / "out", max_total_bytes=2**20)
    assert not (tmp_path / "out" / "bomb.bin").exists()


def understate_sizes(data: bytes, name: bytes, real: int, claimed: int) -> bytes:
    """Rewrite a zip's local and central headers so an entry claims `claimed` bytes instead of `real`."""
    return data.replace(real.to_bytes(4, "little") + len(name).to_bytes(2, "little"),
                        claimed.to_bytes(4, "little") + len(name).to_bytes(2, "little"))


def test_a_zip_whose_headers_lie_about_sizes_is_refused_and_leaves_nothing(tmp_path):
    real = make_zip({"a.jpg": b"A" * 10, "bomb.bin": b"\0" * 3_000_000})
    lying = understate_sizes(real, b"bomb.bin", 3_000_000, 100)
    assert lying != real
    with pytest.raises(UnsafePathError):
        extract_zip(lying, tmp_path / "out", max_total_bytes=1000)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_a_corrupt_zip_is_reported_as_not_a_zip(tmp_path):
    with pytest.raises(UnsafePathError, match="not a valid zip"):
        extract_zip(b"PK\x03\x04 this is not really a zip", tmp_path / "out")


# --- a folder on the server ------------------------------------------------------------------

def test_a_server_folder_under_the_data_root_is_accepted(tmp_path):
    (tmp_path / "batch1").mkdir()
    assert folder_under_root(tmp_path / "batch1", tmp_path) == (tmp_path / "batch1").resolve()
    assert folder_under_root("batch1", tmp_path) == (tmp_path / "batch1").resolve()


@pytest.mark.parametrize("folder", ["/etc", "..", "batch1/../.."])
def test_a_server_folder_outside_the_data_root_is_refused(tmp_path, folder):
    root = tmp_path / "root"
    (root / "batch1").mkdir(parents=True)
    with pytest.raises(UnsafePathError, match="outside the data folder"):
        folder_under_root(folder, root)


def test_a_symlinked_server_folder_pointing_out_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "shortcut").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="outside the data folder"):
        folder_under_root("shortcut", root)


def test_a_missing_server_folder_says_so(tmp_path):
    with pytest.raises(NotADirectoryError, match="does not exist"):
        folder_under_root("nope", tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        folder_under_root("file.txt", tmp_path)
