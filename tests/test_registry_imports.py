"""A version zip from another machine is trusted with no path of this server: it names encoders shipped with
the app, or it carries its own LoRA adapter (kept in its version folder). A card that points the text adapter
or an encoder spec at any other folder is refused with the reason, and nothing is written; the shipped
default, LoRA adapter included, still goes out and comes back in."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from core import config
from core.registry import VERSION_ADAPTER, HeadRegistry, RegistryError, read_version_folder, write_version_folder

from .test_registry import expected_for_app, make_card, make_heads
from .test_registry_faults import files_under, no_temp_left

SHIPPED = config.DEFAULT_HEAD_DIR
SHIPPED_CARD = json.loads((SHIPPED / "card.json").read_text()) if (SHIPPED / "card.json").exists() else None
needs_shipped_adapter = pytest.mark.skipif(
    SHIPPED_CARD is None or not SHIPPED_CARD["text_encoder"].get("adapter"), reason="the shipped default has no LoRA adapter")


def weights_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save
    return save({name: t.contiguous() for name, t in tensors.items()})


def version_zip(card: dict, files: dict[str, bytes] | None = None) -> bytes:
    """A zip as a person could craft it: weights, this card, and any other files (``adapter/...``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.safetensors", weights_bytes(make_heads(7)))
        archive.writestr("card.json", json.dumps(card))
        for name, data in (files or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def fake_adapter(folder: Path) -> Path:
    """A folder that looks like a LoRA adapter to the registry (config + safetensors tensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (folder / "adapter_model.safetensors").write_bytes(weights_bytes({"lora_A": torch.ones(2, 4)}))
    return folder


@pytest.fixture
def registry(tmp_path):
    builtin = tmp_path / "shipped"
    write_version_folder(builtin, make_heads(seed=99), make_card(note="shipped default"))
    registry = HeadRegistry(tmp_path / "home" / "heads", builtin=builtin)
    registry.activate(registry.save(make_heads(1), make_card(), note="in service"))
    return registry


# --------------------------------------------------------------------------- hostile cards


def hostile_cards(tmp_path: Path) -> dict[str, dict]:
    outside = fake_adapter(tmp_path / "somewhere-on-the-server")
    text, image = make_card()["text_encoder"], make_card()["image_encoder"]
    return {
        "adapter at a server folder": make_card(text_encoder={**text, "adapter": str(outside)}),
        "adapter climbing out of the shipped assets": make_card(
            text_encoder={**text, "adapter": "assets/models/../../tests"}),
        "adapter said to be in the version folder, not carried": make_card(
            text_encoder={**text, "adapter": VERSION_ADAPTER}),
        "text encoder from a server folder": make_card(text_encoder={**text, "spec": str(tmp_path)}),
        "image encoder from a server folder": make_card(image_encoder={**image, "spec": "/srv/models/vit"}),
        "image encoder from the hub": make_card(image_encoder={**image, "spec": "google/vit-base-patch16-224"}),
    }


@pytest.mark.parametrize("how, field", [
    ("adapter at a server folder", "text_encoder.adapter"),
    ("adapter climbing out of the shipped assets", "text_encoder.adapter"),
    ("adapter said to be in the version folder, not carried", "text_encoder.adapter"),
    ("text encoder from a server folder", "text_encoder.spec"),
    ("image encoder from a server folder", "image_encoder.spec"),
    ("image encoder from the hub", "image_encoder.spec"),
])
def test_a_zip_whose_card_points_at_the_server_is_refused_and_nothing_is_written(registry, tmp_path, how, field):
    before = files_under(registry.root)
    served = registry.active_version()
    # Even with the ids of the running encoders copied in, so that it fits this app in every other way.
    with pytest.raises(RegistryError, match="not imported: .*must name encoders shipped with this app") as refused:
        registry.import_zip(version_zip(hostile_cards(tmp_path)[how]), expected=expected_for_app())
    assert f"{field} " in str(refused.value)
    assert files_under(registry.root) == before  # no version, no record event, no temp folder
    assert no_temp_left(registry) and registry.active_version() == served


def test_the_two_file_upload_is_held_to_the_same_rule(registry, tmp_path):
    card = hostile_cards(tmp_path)["adapter at a server folder"]
    before = files_under(registry.root)
    with pytest.raises(RegistryError, match=r"text_encoder\.adapter '.*somewhere-on-the-server' is neither shipped"):
        registry.import_version(weights_bytes(make_heads(7)), json.dumps(card).encode(), expected=expected_for_app())
    assert files_under(registry.root) == before


def test_a_carried_adapter_must_be_a_lora_adapter_in_safetensors(registry, tmp_path):
    text = make_card()["text_encoder"]
    card = make_card(text_encoder={**text, "adapter": "adapter"})
    config_ok = json.dumps({"peft_type": "LORA"}).encode()
    tensors_ok = weights_bytes({"lora_A": torch.ones(2, 2)})
    before = files_under(registry.root)
    cases = {
        "a pickle for weights": ({"adapter/adapter_config.json": config_ok,
                                  "adapter/adapter_model.safetensors": b"\x80\x04pickle"}, "not a valid safetensors"),
        "another kind of config": ({"adapter/adapter_config.json": b'{"peft_type": "PREFIX_TUNING"}',
                                    "adapter/adapter_model.safetensors": tensors_ok}, "not a LoRA adapter config"),
        "half an adapter": ({"adapter/adapter_config.json": config_ok}, "has no adapter_model.safetensors"),
    }
    for files, reason in cases.values():
        with pytest.raises(RegistryError, match=reason):
            registry.import_zip(version_zip(card, files), expected=expected_for_app())
    with pytest.raises(RegistryError, match=r"carries a text adapter \(adapter/\) but its card names none"):
        registry.import_zip(version_zip(make_card(), cases["a pickle for weights"][0]), expected=expected_for_app())
    assert files_under(registry.root) == before


# --------------------------------------------------------------------------- what still goes through


def test_a_version_carrying_its_own_adapter_keeps_it_in_its_folder_through_corrections_and_deletes(tmp_path):
    # Made on another machine with an adapter it fine-tuned there: its export carries the adapter.
    adapter = fake_adapter(tmp_path / "elsewhere" / "my-adapter")
    text = make_card()["text_encoder"]
    elsewhere = HeadRegistry(tmp_path / "elsewhere" / "heads")
    made = elsewhere.save(make_heads(3), make_card(text_encoder={**text, "adapter": str(adapter)}), note="tuned")
    exported = elsewhere.export_zip(made)
    assert set(zipfile.ZipFile(io.BytesIO(exported)).namelist()) == {
        "weights.safetensors", "card.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}

    here = HeadRegistry(tmp_path / "here" / "heads")
    imported = here.import_zip(exported, expected=expected_for_app())
    tensors, card = here.load(imported)
    folder = here.versions_dir / imported
    assert card.text_encoder.adapter == VERSION_ADAPTER and card.adapter_dir() == folder / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (folder / "adapter" / name).read_bytes() == (adapter / name).read_bytes()
    assert read_version_folder(folder)[1].adapter_dir() == folder / "adapter"

    # A correction saved from it gets its own copy, so deleting the parent leaves it whole.
    corrected = here.save({k: t + 1 for k, t in tensors.items()}, card, note="corrected", parent=imported)
    here.delete(imported)
    assert here.damage(corrected) is None
    assert (here.card(corrected).adapter_dir() / "adapter_model.safetensors").read_bytes() == \
        (adapter / "adapter_model.safetensors").read_bytes()
    # And its own export carries the adapter on to a third machine.
    third = HeadRegistry(tmp_path / "third" / "heads")
    assert third.load(third.import_zip(here.export_zip(corrected)))[1].adapter_dir().is_dir()

    # A version whose adapter went missing is listed as damaged, never served.
    shutil.rmtree(here.versions_dir / corrected / "adapter")
    assert "adapter is missing" in here.damage(corrected)


@needs_shipped_adapter
def test_the_shipped_default_with_its_lora_adapter_goes_out_and_comes_back_in(tmp_path):
    """The shipped adapter is named, not carried; the imported version names the same folder."""
    elsewhere = HeadRegistry(tmp_path / "elsewhere", builtin=SHIPPED)
    tensors, card = elsewhere.load("builtin")
    made = elsewhere.save({name: t + 0.01 for name, t in tensors.items()}, card, note="made elsewhere")
    exported = elsewhere.export_zip(made)
    assert set(zipfile.ZipFile(io.BytesIO(exported)).namelist()) == {"weights.safetensors", "card.json"}

    here = HeadRegistry(tmp_path / "here", builtin=SHIPPED)
    expected = {"text_encoder": {"id": card.text_encoder.id, "dim": card.text_encoder.dim},
                "image_encoder": {"id": card.image_encoder.id, "dim": card.image_encoder.dim},
                "tensor_shapes": {name: tuple(t.shape) for name, t in tensors.items()}}
    imported = here.import_zip(exported, expected=expected)
    here.activate(imported)
    served = here.card(here.active_version())
    assert served.text_encoder == card.text_encoder  # spec, id, dim and adapter as shipped
    assert served.adapter_dir() == card.adapter_dir() == config.REPO_ROOT / SHIPPED_CARD["text_encoder"]["adapter"]


@needs_shipped_adapter
def test_an_imported_version_with_a_carried_adapter_loads_the_encoder_its_card_names(tmp_path):
    """The real MiniLM with the shipped LoRA adapter, copied to a folder of its own (as a fine-tuning on
    another machine would leave it): after the import, the encoder built from the card is the one the heads
    were trained on (its id carries the adapter's hash)."""
    from core.encoders import load_text_encoder

    adapter = tmp_path / "fine-tuned-elsewhere"
    shutil.copytree(config.REPO_ROOT / SHIPPED_CARD["text_encoder"]["adapter"], adapter)
    tensors, shipped = read_version_folder(SHIPPED)
    card = {**shipped.to_dict(), "text_encoder": {**shipped.text_encoder.to_dict(), "adapter": str(adapter)}}
    elsewhere = HeadRegistry(tmp_path / "elsewhere")
    exported = elsewhere.export_zip(elsewhere.save(tensors, card))
    shutil.rmtree(adapter)  # gone from "the other machine": only the zip has it now

    here = HeadRegistry(tmp_path / "here", builtin=SHIPPED)
    _, imported = here.load(here.import_zip(exported, expected={"text_encoder": {"id": shipped.text_encoder.id}}))
    encoder = load_text_encoder(imported.text_encoder.spec, adapter=imported.adapter_dir(), device=torch.device("cpu"))
    assert encoder.id == imported.text_encoder.id == shipped.text_encoder.id
