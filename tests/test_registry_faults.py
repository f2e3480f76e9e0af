"""The head registry survives damage: damaged versions are listed as such and never activated, the
active pointer never points at nothing (the shipped default serves, with a warning), and a read-only or
full disk gives one clear error with nothing half-written and nothing already saved lost."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.registry import HeadRegistry, RegistryError, RegistryUnwritable, folders, write_version_folder

from .test_registry import make_card, make_heads

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def builtin(tmp_path):
    folder = tmp_path / "assets" / "default"
    write_version_folder(folder, make_heads(seed=99), make_card(note="shipped default"))
    return folder


@pytest.fixture
def registry(tmp_path, builtin):
    return HeadRegistry(tmp_path / "home" / "heads", builtin=builtin)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def no_temp_left(registry: HeadRegistry) -> bool:
    return not [p for p in registry.root.rglob(".tmp-*")]


# ----- damaged version files -----------------------------------------------------------------------

def damage(folder: Path, how: str) -> None:
    weights, card = folder / "weights.safetensors", folder / "card.json"
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "garbled weights":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "missing weights":
        weights.unlink()
    elif how == "garbled card":
        card.write_bytes(b"\x00\xff{ not json")
    elif how == "missing card":
        card.unlink()
    elif how == "invalid card":
        card.write_text(json.dumps({"labels": "nope"}))
    else:
        raise AssertionError(how)


DAMAGES = ["truncated weights", "garbled weights", "missing weights", "garbled card", "missing card", "invalid card"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_version_is_listed_as_damaged_and_cannot_be_activated(registry, how):
    good = registry.save(make_heads(1), make_card(), note="good")
    registry.activate(good)
    bad = registry.save(make_heads(2), make_card(), note="to be damaged")
    damage(registry.versions_dir / bad, how)

    listed = {c["version"]: c for c in registry.versions()}  # no exception
    assert set(listed) == {good, bad, "builtin"}
    assert listed[bad]["damaged"]
    assert "damaged" not in listed[good] and "damaged" not in listed["builtin"]
    if how.endswith("weights") or how == "garbled card":
        assert "weights" in listed[bad]["damaged"] or "card" in listed[bad]["damaged"]

    with pytest.raises(RegistryError, match=f"version {bad} is damaged and cannot be activated"):
        registry.activate(bad)
    assert registry.active_version() == good  # nothing already finished is lost
    assert registry.load(good)[1].note == "good"


def test_a_repaired_file_is_checked_again(registry):
    version = registry.save(make_heads(1), make_card())
    weights = registry.versions_dir / version / "weights.safetensors"
    original = weights.read_bytes()
    damage(registry.versions_dir / version, "truncated weights")
    assert registry.damage(version)
    weights.write_bytes(original)
    assert registry.damage(version) is None


@pytest.mark.parametrize("how", ["garbled weights", "missing card", "folder removed"])
def test_a_damaged_or_missing_active_version_falls_back_to_the_shipped_default(registry, how, caplog):
    active = registry.save(make_heads(1), make_card())
    registry.activate(active)
    if how == "folder removed":
        import shutil
        shutil.rmtree(registry.versions_dir / active)
    else:
        damage(registry.versions_dir / active, how)

    version, problem = registry.serving()
    assert version == "builtin" == registry.active_version()
    assert f"the active version {active} cannot be used" in problem
    assert "serving the shipped default builtin" in problem
    assert any("serving the shipped default" in r.getMessage() for r in caplog.records)
    # The default is always there to go back to, and activating it repairs the record.
    registry.activate("builtin")
    assert registry.serving() == ("builtin", None)


def test_a_garbled_active_record_serves_the_default_and_is_kept_aside_when_replaced(registry):
    version = registry.save(make_heads(1), make_card())
    registry.activate(version)
    registry.active_file.write_bytes(b"{\"active\": [garbled")

    served, problem = registry.serving()
    assert served == "builtin" and "record of the active version is damaged" in problem
    assert not registry.can_roll_back()
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()

    registry.activate(version)  # an operator puts things right
    assert registry.serving() == (version, None)
    kept = list(registry.root.glob("active.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"{\"active\": [garbled"


def test_rollback_skips_versions_damaged_since(registry):
    first = registry.save(make_heads(1), make_card())
    second = registry.save(make_heads(2), make_card())
    third = registry.save(make_heads(3), make_card())
    for version in (first, second, third):
        registry.activate(version)
    damage(registry.versions_dir / second, "garbled weights")
    assert registry.rollback() == first
    assert registry.active_version() == first


def test_delete_keeps_the_default_and_the_active_version(registry):
    kept = registry.save(make_heads(1), make_card())
    gone = registry.save(make_heads(2), make_card())
    registry.activate(gone)
    registry.activate(kept)
    with pytest.raises(RegistryError, match="shipped default cannot be deleted"):
        registry.delete("builtin")
    with pytest.raises(RegistryError, match=f"version {kept} is active"):
        registry.delete(kept)
    registry.delete(gone)
    assert [c["version"] for c in registry.versions()] == [kept, "builtin"]
    assert registry.rollback() == "builtin"  # the deleted version left the history too
    assert [e["action"] for e in registry.events()] == ["activated", "activated", "deleted", "rolled back to"]


# ----- unwritable home -----------------------------------------------------------------------------

@pytest.fixture
def read_only(registry, monkeypatch):
    """Make the registry's folder read-only: chmod where that binds (not root), else every write fails
    the way a read-only mount fails (EROFS)."""
    if os.geteuid() != 0:
        for folder in (registry.root, registry.versions_dir):
            folder.chmod(0o555)
        yield
        for folder in (registry.root, registry.versions_dir):
            folder.chmod(0o755)
        return

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(folders, "write_file", refuse)
    monkeypatch.setattr(folders, "write_into_temp", refuse)
    real_open = open

    def open_read_only(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_read_only)
    yield


@pytest.fixture
def filled(registry):
    """A registry with one active version and a second saved one, as a user would have it."""
    first = registry.save(make_heads(1), make_card(), note="first")
    registry.activate(first)
    second = registry.save(make_heads(2), make_card(), note="second")
    return registry, first, second


def test_a_read_only_home_refuses_every_change_clearly_and_keeps_what_was_saved(filled, request, monkeypatch):
    registry, first, second = filled
    before = files_under(registry.root)
    request.getfixturevalue("read_only")

    for change in (lambda: registry.save(make_heads(3), make_card()), lambda: registry.activate(second),
                   registry.rollback, lambda: registry.delete(second)):
        with pytest.raises(RegistryUnwritable, match="read-only.*nothing was changed"):
            change()
    assert registry.active_version() == first
    assert {c["version"] for c in registry.versions()} == {first, second, "builtin"}
    monkeypatch.undo()
    assert files_under(registry.root) == before
    assert no_temp_left(registry)


# ----- full disk (a real EFBIG from a file size limit, in a child process) ----------------------------

FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, resource, signal, sys
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from core.registry import HeadRegistry, RegistryError
    from test_registry import make_card, make_heads
    import torch

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
    registry = HeadRegistry(Path({root!r}), builtin=Path({builtin!r}))
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    out = {{}}
    big = {{name: torch.randn(64, 256) for name in ("a", "b")}} | make_heads(3)  # well over the limit
    for name, change in (("save", lambda: registry.save(big, make_card())),
                         ("activate", lambda: registry.activate({second!r}))):
        try:
            change()
            out[name] = "done"
        except RegistryError as error:
            out[name] = str(error)
    print(json.dumps(out))
""")


def test_a_full_disk_gives_one_clear_error_and_leaves_nothing_half_written(filled, builtin, tmp_path):
    registry, first, second = filled
    # Grow the record past the limit so rewriting it fails too.
    state = json.loads(registry.active_file.read_text())
    state["events"] *= 20
    registry.active_file.write_text(json.dumps(state, indent=2))
    limit = 2048
    assert registry.active_file.stat().st_size > limit
    before = files_under(registry.root)
    script = FULL_DISK_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), root=str(registry.root),
                                     builtin=str(builtin), limit=limit, second=second)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("save", "activate"):
        assert "the disk is full" in outcome[name] and "nothing was changed" in outcome[name], outcome
    assert "Traceback" not in result.stderr
    assert files_under(registry.root) == before  # no half-written version, the record untouched
    assert no_temp_left(registry)
    assert registry.active_version() == first


def test_the_cli_on_a_full_disk_says_so_in_one_line(filled, builtin, tmp_path):
    registry, first, second = filled
    state = json.loads(registry.active_file.read_text())
    state["events"] *= 20
    registry.active_file.write_text(json.dumps(state, indent=2))
    home = registry.root.parent
    env = {**os.environ, "MMSA_HOME": str(home), "MMSA_HEAD_DIR": str(builtin)}
    code = ("import resource, signal, runpy, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
            f"sys.argv = ['core.cli', 'activate', {second!r}]; runpy.run_module('core.cli', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: could not record the active head version: the disk is full")
    assert registry.active_version() == first


# ----- what the app says -----------------------------------------------------------------------------

def test_the_app_serves_the_default_with_a_warning_and_lists_the_damaged_version(app_env, tmp_path, monkeypatch):
    from core.registry import open_registry

    from .conftest import button, open_page, texts

    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    registry = open_registry()
    tensors, card = registry.load("builtin")
    broken = registry.save({name: t + 0.01 for name, t in tensors.items()}, card)
    registry.activate(broken)
    damage(registry.versions_dir / broken, "truncated weights")
    builtin = registry.active_version()

    home = open_page("home")
    assert not home.exception and not home.error
    assert {m.label: m.value for m in home.metric}["Head version"] == builtin
    assert f"the active version {broken} cannot be used" in texts(home)

    at = open_page("correct")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "last activated" in d.value.columns)
    row = table[table["version"] == broken].iloc[0]
    assert str(row.iloc[-1]).startswith("damaged: ")
    at.selectbox(key="correct_version").set_value(broken).run()
    assert button(at, "correct_activate").disabled
    assert f"Version {broken} is damaged and cannot be activated" in texts(at)
    assert not any(getattr(b, "key", None) == "correct_download" for b in at.get("download_button"))


def test_the_cli_says_when_the_default_serves_in_place_of_a_damaged_version(registry, builtin, monkeypatch, capsys):
    import logging

    from core.cli import main

    active = registry.save(make_heads(1), make_card(), note="mine")
    registry.activate(active)
    damage(registry.versions_dir / active, "garbled weights")
    monkeypatch.setenv("MMSA_HOME", str(registry.root.parent))
    monkeypatch.setenv("MMSA_HEAD_DIR", str(builtin))
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a shell: the CLI sets up its own lines
    assert main(["versions"]) == 0
    out, err = capsys.readouterr()
    assert f"{active}" in out and "DAMAGED: weights.safetensors does not match the sha256" in out
    assert out.splitlines()[-1].startswith("* builtin")
    assert err.startswith(f"warning: the active version {active} cannot be used")
    assert "Traceback" not in err
