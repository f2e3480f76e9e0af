"""The head registry, told as a user's story: train, save, compare, activate, roll back, share."""
from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import zipfile

import pytest
import torch

from core.io.labels import LABELS
from core.registry import (
    HeadRegistry,
    RegistryError,
    folders,
    read_version_folder,
    transfer,
    weights,
    write_version_folder,
)

TEXT_DIM, IMAGE_DIM, HIDDEN = 8, 6, 4


def make_heads(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "text_head.weight": (3, TEXT_DIM), "text_head.bias": (3,),
        "image_head.weight": (3, IMAGE_DIM), "image_head.bias": (3,),
        "fusion.0.weight": (HIDDEN, TEXT_DIM + IMAGE_DIM), "fusion.0.bias": (HIDDEN,),
        "fusion.3.weight": (3, HIDDEN), "fusion.3.bias": (3,),
    }
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def make_card(**overrides) -> dict:
    card = {
        "text_encoder": {"spec": "bundled:minilm-l6", "id": "minilm-l6@abc", "dim": TEXT_DIM},
        "image_encoder": {"spec": "bundled:efficientnet-lite0", "id": "effnet-lite0@def", "dim": IMAGE_DIM},
        "labels": list(LABELS),
        "hidden": HIDDEN,
        "dropout": 0.1,
        "temperatures": {"text": 1.0, "image": 1.2, "fused": 0.9},
        "training": {"data_fingerprint": "sha256:feed", "n_train": 10, "n_dev": 4, "epochs": 3},
        "metrics": {"dev_macro_f1": 0.5},
        "custom_field": {"kept": True},
    }
    card.update(overrides)
    return card


def expected_for_app() -> dict:
    return {
        "text_encoder": {"id": "minilm-l6@abc", "dim": TEXT_DIM},
        "image_encoder": {"id": "effnet-lite0@def", "dim": IMAGE_DIM},
        "tensor_shapes": {name: tuple(t.shape) for name, t in make_heads().items()},
    }


@pytest.fixture
def builtin(tmp_path):
    folder = tmp_path / "assets" / "models" / "default"
    write_version_folder(folder, make_heads(seed=99), make_card(note="shipped default"))
    return folder


@pytest.fixture
def registry(tmp_path, builtin):
    return HeadRegistry(tmp_path / "home" / "heads", builtin=builtin)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --------------------------------------------------------------------------- the main story


def test_builtin_default_is_active_when_nothing_else_is(registry):
    assert registry.active_version() == "builtin"
    tensors, card = registry.load(registry.active_version())
    assert_same_tensors(tensors, make_heads(seed=99))
    assert card.note == "shipped default"
    assert [c["version"] for c in registry.versions()] == ["builtin"]


def test_save_two_versions_list_activate_and_roll_back(registry):
    first = registry.save(make_heads(1), make_card(), note="first training run")
    second = registry.save(make_heads(2), make_card(), note="corrected 5 tweets", parent=first)

    # Saving never activates: the user decides after comparing metrics.
    assert registry.active_version() == "builtin"

    listed = registry.versions()
    assert [c["version"] for c in listed] == [second, first, "builtin"]
    assert listed[0]["parent"] == first and listed[0]["note"] == "corrected 5 tweets"
    assert listed[1]["parent"] is None
    for card in listed[:2]:
        assert card["created_at"].endswith("+00:00")
        assert len(card["weights_sha256"]) == 64
        assert card["custom_field"] == {"kept": True}  # fields the registry does not know survive

    tensors, card = registry.load(second)
    assert_same_tensors(tensors, make_heads(2))
    assert card.version == second

    registry.activate(first)
    registry.activate(second)
    assert registry.active_version() == second
    assert registry.rollback() == first
    assert registry.active_version() == first
    assert registry.rollback() == "builtin"  # the implicit default is a real rollback target
    assert registry.active_version() == "builtin"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()


def test_active_json_layout(registry):
    version = registry.save(make_heads(1), make_card())
    registry.activate(version)
    state = json.loads((registry.root / "active.json").read_text())
    assert {k: state[k] for k in ("active", "history")} == {"active": version, "history": ["builtin"]}
    assert [(e["action"], e["version"], e["role"]) for e in state["events"]] == [("activated", version, "operator")]
    assert (registry.root / "versions" / version / "weights.safetensors").is_file()
    assert (registry.root / "versions" / version / "card.json").is_file()


def test_state_survives_a_new_registry_object(registry, builtin):
    version = registry.save(make_heads(1), make_card())
    registry.activate(version)
    again = HeadRegistry(registry.root, builtin=builtin)
    assert again.active_version() == version


def test_builtin_uses_its_card_version_when_it_has_one(tmp_path):
    folder = tmp_path / "default"
    write_version_folder(folder, make_heads(), make_card(version="v20261127-000000-dflt"))
    registry = HeadRegistry(tmp_path / "heads", builtin=folder)
    assert registry.active_version() == "v20261127-000000-dflt"
    assert registry.card("builtin").version == "v20261127-000000-dflt"
    tensors, card = registry.load("v20261127-000000-dflt")
    assert_same_tensors(tensors, make_heads())
    assert card.version == "v20261127-000000-dflt"


def test_no_builtin_and_nothing_active_is_a_clear_error(tmp_path):
    registry = HeadRegistry(tmp_path / "heads")
    with pytest.raises(RegistryError, match="no head version is active"):
        registry.active_version()
    version = registry.save(make_heads(), make_card())
    registry.activate(version)
    assert registry.active_version() == version


def test_builtin_folder_is_never_written(registry, builtin):
    before = {p.name: p.read_bytes() for p in builtin.iterdir()}
    version = registry.save(make_heads(1), make_card())
    registry.activate(version)
    registry.rollback()
    registry.export_zip("builtin")
    assert {p.name: p.read_bytes() for p in builtin.iterdir()} == before


# --------------------------------------------------------------------------- export / import


def test_export_then_import_round_trips(registry, tmp_path):
    version = registry.save(make_heads(3), make_card(), note="good one")
    data = registry.export_zip(version)
    assert set(zipfile.ZipFile(io.BytesIO(data)).namelist()) == {"weights.safetensors", "card.json"}

    other = HeadRegistry(tmp_path / "other-machine")
    imported = other.import_zip(data, expected=expected_for_app())
    assert imported != version
    assert [c["version"] for c in other.versions()] == [imported]
    tensors, card = other.load(imported)
    assert_same_tensors(tensors, make_heads(3))
    assert card.note == "good one"
    assert card.imported_from == version
    assert card.extra["custom_field"] == {"kept": True}
    with pytest.raises(RegistryError):
        other.active_version()  # import does not activate


def test_import_from_two_files(registry, tmp_path):
    version = registry.save(make_heads(4), make_card())
    folder = registry.root / "versions" / version
    imported = HeadRegistry(tmp_path / "other-machine").import_version(
        (folder / "weights.safetensors").read_bytes(), (folder / "card.json").read_bytes(),
        expected=expected_for_app(),
    )
    assert_same_tensors(HeadRegistry(tmp_path / "other-machine").load(imported)[0], make_heads(4))


def test_importing_the_same_version_twice_is_refused_naming_the_version_already_here(registry, tmp_path):
    data = registry.export_zip(registry.save(make_heads(5), make_card(), note="sarcasm fix"))
    other = HeadRegistry(tmp_path / "other-machine")
    first = other.import_zip(data, expected=expected_for_app())
    with pytest.raises(RegistryError, match=f"already here as version {first}"):
        other.import_zip(data, expected=expected_for_app())
    assert [c["version"] for c in other.versions()] == [first]

    # Its own export, or the two files of a version already here, are the same version too.
    with pytest.raises(RegistryError, match=f"already here as version {first}"):
        other.import_zip(other.export_zip(first))
    version = other.save(make_heads(6), make_card())
    folder = other.root / "versions" / version
    with pytest.raises(RegistryError, match=f"already here as version {version}"):
        other.import_version((folder / "weights.safetensors").read_bytes(), (folder / "card.json").read_bytes())
    # So is a copy of the shipped default.
    with pytest.raises(RegistryError, match=f"already here as version {registry.active_version()}"):
        registry.import_zip(registry.export_zip(registry.active_version()))

    # Same weights with another card, or the same card with other weights, are other versions.
    tensors, card = registry.load(registry.active_version())
    card = {k: v for k, v in card.to_dict().items() if k != "builtin"}
    assert registry.import_version(_weights_bytes(tensors), json.dumps({**card, "note": "retold"}).encode())
    changed = {name: t + 1 for name, t in make_heads(5).items()}
    assert other.import_version(_weights_bytes(changed), json.dumps({**make_card(), "note": "sarcasm fix"}).encode())


def _weights_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save
    return save({name: t.contiguous() for name, t in tensors.items()})


def _exported_files(registry, tensors=None, card=None) -> tuple[bytes, bytes]:
    version = registry.save(tensors or make_heads(), card or make_card())
    folder = registry.root / "versions" / version
    return (folder / "weights.safetensors").read_bytes(), (folder / "card.json").read_bytes()


def test_import_refuses_other_encoder(registry):
    weights, card = _exported_files(registry, card=make_card(
        text_encoder={"spec": "distilbert-base-uncased", "id": "distilbert@123", "dim": TEXT_DIM}))
    with pytest.raises(RegistryError, match=r"text_encoder\.id differs: file was trained on 'distilbert@123', app runs 'minilm-l6@abc'"):
        registry.import_version(weights, card, expected=expected_for_app())


def test_import_refuses_other_dim(registry):
    weights, card = _exported_files(registry, card=make_card(
        image_encoder={"spec": "bundled:efficientnet-lite0", "id": "effnet-lite0@def", "dim": 1280}))
    with pytest.raises(RegistryError, match=r"image_encoder\.dim differs.*1280.*6"):
        registry.import_version(weights, card, expected=expected_for_app())


def test_import_refuses_wrong_shapes_and_names(registry):
    heads = make_heads()
    heads["fusion.0.weight"] = torch.zeros(5, TEXT_DIM + IMAGE_DIM)
    heads["extra.weight"] = torch.zeros(2)
    del heads["text_head.bias"]
    weights, card = _exported_files(registry, tensors=heads)
    with pytest.raises(RegistryError) as error:
        registry.import_version(weights, card, expected=expected_for_app())
    message = str(error.value)
    assert "missing tensors: text_head.bias" in message
    assert "unexpected tensors: extra.weight" in message
    assert "tensor fusion.0.weight has shape [5, 14], expected [4, 14]" in message


def test_import_refuses_other_labels(registry):
    weights, card = _exported_files(registry, card=make_card(labels=["pos", "neu", "neg"]))
    with pytest.raises(RegistryError, match="labels differ"):
        registry.import_version(weights, card)


def test_import_refuses_pickle_bytes_without_unpickling(registry, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:  # would create `marker` if anything ever unpickled it
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps({"text_head.weight": Exploit()})
    with pytest.raises(RegistryError, match="not a valid safetensors file"):
        registry.import_version(payload, json.dumps(make_card()).encode())
    buffer = io.BytesIO()
    torch.save(make_heads(), buffer)  # a classic .pt checkpoint is a pickle too
    with pytest.raises(RegistryError, match="not a valid safetensors file"):
        registry.import_version(buffer.getvalue(), json.dumps(make_card()).encode())
    assert not marker.exists()
    assert [c["version"] for c in registry.versions()] == ["builtin"]


def test_import_refuses_corrupt_json_and_bad_types(registry):
    weights, _ = _exported_files(registry)
    with pytest.raises(RegistryError, match="card.json is not valid JSON"):
        registry.import_version(weights, b'{"labels": [')
    bad = make_card(text_encoder={"spec": "x", "id": "y", "dim": "768"}, dropout=3)
    with pytest.raises(RegistryError, match=r"text_encoder\.dim must be a positive integer.*dropout"):
        registry.import_version(weights, json.dumps(bad).encode())
    with pytest.raises(RegistryError, match="card must be a JSON object"):
        registry.import_version(weights, b"[1, 2]")


def test_import_refuses_weights_that_do_not_match_their_card(registry):
    weights, card = _exported_files(registry)
    tampered = bytearray(weights)
    tampered[-1] ^= 0xFF
    with pytest.raises(RegistryError, match="does not match the sha256"):
        registry.import_version(bytes(tampered), card)


def test_import_refuses_non_float32_tensors(registry):
    import safetensors.torch

    weights = safetensors.torch.save({"text_head.weight": torch.zeros(3, TEXT_DIM, dtype=torch.float64)})
    with pytest.raises(RegistryError, match="must be float32"):
        registry.import_version(weights, json.dumps(make_card()).encode())


def test_upload_size_caps(registry, monkeypatch):
    monkeypatch.setattr(transfer, "MAX_WEIGHTS_BYTES", 100)
    weights, card = _exported_files(registry)
    with pytest.raises(RegistryError, match="the limit is 100"):
        registry.import_version(weights, card)
    monkeypatch.setattr(transfer, "MAX_ZIP_BYTES", 100)
    with pytest.raises(RegistryError, match="zip is .* bytes; the limit is 100"):
        registry.import_zip(b"x" * 101)


def test_import_zip_only_reads_its_two_files(registry):
    weights, card = _exported_files(registry)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.sh", "rm -rf /")
        archive.writestr("card.json", card)
    with pytest.raises(RegistryError, match="zip has no weights.safetensors"):
        registry.import_zip(buffer.getvalue())
    with pytest.raises(RegistryError, match="not a readable zip"):
        registry.import_zip(b"PK\x03\x04 definitely not a zip")


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("crafted", ["../../etc", "..", ".hidden", "a/b", "", "v1\x00", "x" * 200, None])
def test_crafted_version_ids_are_refused_everywhere(registry, crafted):
    for call in (registry.card, registry.load, registry.activate, registry.export_zip):
        with pytest.raises(RegistryError, match="invalid head version id"):
            call(crafted)
    if crafted is not None:  # parent=None is legitimate: a version trained from scratch
        with pytest.raises(RegistryError, match="invalid head version id"):
            registry.save(make_heads(), make_card(), parent=crafted)


def test_crash_during_save_leaves_active_version_and_listing_untouched(registry, monkeypatch):
    good = registry.save(make_heads(1), make_card())
    registry.activate(good)
    real_write = folders.write_file

    def write_weights_then_crash(path, data):
        if path.name == "card.json":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(folders, "write_file", write_weights_then_crash)
    with pytest.raises(OSError, match="disk full"):
        registry.save(make_heads(2), make_card())

    def failing_serialiser(tensors):
        raise RuntimeError("crash inside safetensors")

    monkeypatch.setattr(weights, "save_safetensors_bytes", failing_serialiser)
    with pytest.raises(RuntimeError):
        registry.save(make_heads(3), make_card())

    assert registry.active_version() == good
    assert [c["version"] for c in registry.versions()] == [good, "builtin"]
    assert [p.name for p in (registry.root / "versions").iterdir()] == [good]  # temp folder cleaned


def test_leftover_temp_folder_from_a_killed_process_is_not_listed(registry):
    good = registry.save(make_heads(1), make_card())
    leftover = registry.root / "versions" / ".tmp-deadbeef"
    leftover.mkdir()
    (leftover / "weights.safetensors").write_bytes(b"half")
    assert [c["version"] for c in registry.versions()] == [good, "builtin"]


def test_corrupt_versions_raise_with_their_name_and_are_listed_as_damaged(registry):
    good = registry.save(make_heads(1), make_card())
    bad_sha = registry.save(make_heads(2), make_card())
    bad_json = registry.save(make_heads(3), make_card())
    weights_path = registry.root / "versions" / bad_sha / "weights.safetensors"
    data = bytearray(weights_path.read_bytes())
    data[-1] ^= 0xFF
    weights_path.write_bytes(bytes(data))
    (registry.root / "versions" / bad_json / "card.json").write_text("{not json")

    with pytest.raises(RegistryError, match=f"{bad_sha}.*sha256"):
        registry.load(bad_sha)
    with pytest.raises(RegistryError, match=f"{bad_json}.*not valid JSON"):
        registry.card(bad_json)
    with pytest.raises(RegistryError, match=bad_sha):
        registry.activate(bad_sha)  # a corrupt version never becomes active
    # Both are listed, marked damaged with the reason; only whole versions carry a full card.
    listed = {c["version"]: c for c in registry.versions()}
    assert set(listed) == {bad_json, bad_sha, good, "builtin"} and list(listed)[-1] == "builtin"
    assert "sha256" in listed[bad_sha]["damaged"] and "not valid JSON" in listed[bad_json]["damaged"]
    assert "damaged" not in listed[good] and "damaged" not in listed["builtin"]
    assert registry.active_version() == "builtin"


def test_unknown_version_is_a_clear_error(registry):
    with pytest.raises(RegistryError, match="no head version 'v20990101-000000-aaaa'"):
        registry.load("v20990101-000000-aaaa")


def test_save_refuses_bad_input(registry):
    with pytest.raises(RegistryError, match="float32"):
        registry.save({"w": torch.zeros(2, dtype=torch.int64)}, make_card())
    with pytest.raises(RegistryError, match="image_encoder"):
        registry.save(make_heads(), make_card(image_encoder=None))
    assert [c["version"] for c in registry.versions()] == ["builtin"]


def test_save_accepts_numpy_and_torch_scalars_in_metrics(registry):
    import numpy as np

    card = make_card(metrics={"dev_macro_f1": np.float32(0.75), "n": torch.tensor(3)})
    version = registry.save(make_heads(), card)
    assert registry.card(version).metrics == {"dev_macro_f1": 0.75, "n": 3}


def test_write_version_folder_replaces_atomically_and_reads_back(tmp_path):
    folder = tmp_path / "default"
    write_version_folder(folder, make_heads(1), make_card())
    write_version_folder(folder, make_heads(2), make_card(note="retrained"))
    tensors, card = read_version_folder(folder)
    assert_same_tensors(tensors, make_heads(2))
    assert card.note == "retrained"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]  # no temp leftovers


def _activate_many(root, versions, rounds):
    registry = HeadRegistry(root)
    for i in range(rounds):
        registry.activate(versions[i % 2])


def test_two_processes_activating_at_once_lose_no_history(tmp_path):
    registry = HeadRegistry(tmp_path / "heads")
    ids = [registry.save(make_heads(i), make_card()) for i in range(4)]
    rounds = 15
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_activate_many, args=(registry.root, pair, rounds))
               for pair in (ids[:2], ids[2:])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    state = json.loads((registry.root / "active.json").read_text())
    # Each process alternates its own two versions, so every activation changes the active
    # one; with nothing active at first, 2*rounds activations leave 2*rounds - 1 history entries.
    assert len(state["history"]) == 2 * rounds - 1
    assert state["active"] in ids
