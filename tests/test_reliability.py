"""Reliability, told as a user's stories: a crash mid-batch loses nothing and resumes without paying
twice, a crash mid-training leaves the model everyone uses alone, training refuses data it cannot learn
from (and says why), a downloaded CSV cannot run formulas, an uploaded head for other encoders is turned
away, and a novel pasted into a cell is cut and flagged.

Most stories use light fake encoders (a hash of the text, the mean colour of the picture), because what
is tested is the bookkeeping around them; the truncation story uses the real bundled text encoder.
"""
from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from core.features.store import FeatureStore
from core.heads.correction import CorrectionConfig, correct_heads
from core.heads.correction_set import CorrectionItem, run_correction
from core.heads.model import HeadConfig, LateFusionHeads
from core.heads.training import TrainConfig, TrainingRefused, train_heads
from core.io.tables import prepare_pairs, read_table, to_safe_csv_bytes
from core.registry import RegistryError, write_version_folder
from core.scoring.batch import score_rows
from core.scoring.predict import HeadMismatch, Predictor

from .conftest import (
    HIDDEN,
    IMAGE_DIM,
    TEXT_DIM,
    FakeImageEncoder,
    FakeTextEncoder,
    assert_same_weights,
    draw_image,
    fake_card,
    fake_heads,
    fake_predictor,
    serve_v1,
    snapshot,
    synthetic_set,
)

# The light fake encoders, synthetic_set and the `table` fixture live in conftest.py (the concurrent
# sessions story uses them too).


# --------------------------------------------------------------------------- 1. resumable batch


@pytest.mark.parametrize("crashing", ["text", "image"])
def test_a_batch_that_crashes_mid_way_keeps_what_it_scored_and_resumes_without_encoding_anything_twice(
        table, crashing):
    rows = table["rows"]
    # The uninterrupted run, with its own store and encoders.
    reference = score_rows(rows, fake_predictor(), chunk_size=3)
    assert reference.finished and len(reference.frame) == 10

    # The same run on a machine whose encoder dies on the third chunk (rows 6..8).
    text_encoder = FakeTextEncoder(fail_on_call=3 if crashing == "text" else None)
    image_encoder = FakeImageEncoder(fail_on_call=3 if crashing == "image" else None)
    predictor = fake_predictor(text_encoder, image_encoder)
    progress = []
    crashed = score_rows(rows, predictor, chunk_size=3, on_progress=progress.append)

    assert not crashed.finished
    assert crashed.completed == 6 and crashed.total == 10
    assert "stopped at row 6" in crashed.failure and "SimulatedCrash" in crashed.failure
    assert list(crashed.frame["row"]) == [0, 1, 2, 3, 4, 5]  # rows before the failing chunk are kept
    pd.testing.assert_frame_equal(crashed.frame, reference.frame.iloc[:6])
    assert [p.done for p in progress] == [3, 6] and progress[-1].errors == 1

    # The user presses "resume": the encoder works again (a restarted machine).
    text_encoder.fail_on_call = image_encoder.fail_on_call = None
    resumed = score_rows(rows, predictor, chunk_size=3, start=crashed.completed, previous=crashed.frame,
                         on_progress=progress.append)

    assert resumed.finished and resumed.failure is None and resumed.completed == 10
    pd.testing.assert_frame_equal(resumed.frame, reference.frame)
    assert progress[-1].done == 10 and progress[-1].errors == 1  # the bad row counted once, not lost
    # Every good row's text and picture went through the encoders exactly once across both runs.
    good = [r for r in rows if r.error is None]
    assert sorted(text_encoder.seen) == sorted(r.text for r in good)
    assert set(text_encoder.seen.values()) == {1}
    assert sum(image_encoder.seen.values()) == len(good) and set(image_encoder.seen.values()) == {1}


def test_a_batch_the_user_stops_resumes_where_it_stopped(table):
    rows = table["rows"]
    reference = score_rows(rows, fake_predictor(), chunk_size=4)
    text_encoder = FakeTextEncoder()
    predictor = fake_predictor(text_encoder)
    stopped = score_rows(rows, predictor, chunk_size=4, should_stop=lambda: True)
    assert stopped.completed == 4 and stopped.failure == "stopped by the user at row 4"
    resumed = score_rows(rows, predictor, chunk_size=4, start=stopped.completed, previous=stopped.frame)
    pd.testing.assert_frame_equal(resumed.frame, reference.frame)
    assert set(text_encoder.seen.values()) == {1}


# --------------------------------------------------------------------------- 2. crash mid-training


class EpochCrash(RuntimeError):
    pass


def crash_on_epoch(n: int):
    def on_epoch(row: dict) -> None:
        if row["epoch"] == n:
            raise EpochCrash(f"the machine died in epoch {n}")
    return on_epoch


@pytest.fixture()
def deployed(tmp_path):
    registry, engine, v1 = serve_v1(tmp_path, FeatureStore(None))
    return {"registry": registry, "engine": engine, "v1": v1}


def test_a_correction_that_crashes_mid_training_leaves_the_active_version_untouched(deployed, table):
    registry, engine, v1 = deployed["registry"], deployed["engine"], deployed["v1"]
    predictor = engine.predictor()
    listed = [c["version"] for c in registry.versions()]
    on_disk, _ = registry.load(v1)
    served = snapshot(predictor.heads)
    scored_before = score_rows(table["rows"], predictor).frame

    items = [CorrectionItem(f"oh great, another monday #{k}", (table["folder"] / f"pic_{k}.png").read_bytes(),
                            "negative") for k in range(3)]
    with pytest.raises(EpochCrash):
        run_correction(predictor, items, synthetic_set(40, 3), synthetic_set(20, 4),
                       CorrectionConfig(epochs=10), on_epoch=crash_on_epoch(2))
    with pytest.raises(EpochCrash):
        correct_heads(predictor.heads, synthetic_set(5, 5), None, CorrectionConfig(epochs=10),
                      on_epoch=crash_on_epoch(1))

    assert registry.active_version() == v1
    assert [c["version"] for c in registry.versions()] == listed  # nothing new, nothing half-written
    assert not [p.name for p in registry.versions_dir.iterdir() if p.name.startswith(".")]
    assert_same_weights(registry.load(v1)[0], on_disk)
    assert engine.predictor() is predictor
    assert_same_weights(snapshot(predictor.heads), served)
    assert not predictor.heads.training  # no dropout leaked into the heads other sessions score with
    pd.testing.assert_frame_equal(score_rows(table["rows"], predictor).frame, scored_before)


def test_training_from_scratch_that_crashes_leaves_the_registry_as_it_was(deployed):
    registry, v1 = deployed["registry"], deployed["v1"]
    listed = [c["version"] for c in registry.versions()]
    on_disk, card = registry.load(v1)
    with pytest.raises(EpochCrash):
        train_heads(synthetic_set(30, 6), synthetic_set(12, 7),
                    TrainConfig(hidden=HIDDEN, max_epochs=5, patience=5), on_epoch=crash_on_epoch(2))
    assert registry.active_version() == v1
    assert [c["version"] for c in registry.versions()] == listed
    tensors, card_after = registry.load(v1)
    assert_same_weights(tensors, on_disk)
    assert card_after == card


# --------------------------------------------------------------------------- 3. refusals


@pytest.mark.parametrize("train, dev, message", [
    (synthetic_set(10, 8, labels=[2] * 10), synthetic_set(6, 9),
     r"all 10 labelled pairs are 'positive'; training needs at least two different labels"),
    (synthetic_set(5, 8, labels=[0, 1, 2, 0, 1]), synthetic_set(6, 9),
     r"training needs at least 6 labelled pairs; got 5"),
    (synthetic_set(0, 8, labels=[]), synthetic_set(6, 9), r"at least 6 labelled pairs; got 0"),
    (synthetic_set(12, 8), synthetic_set(0, 9, labels=[]), r"the dev set has no usable labelled pairs"),
], ids=["one-class", "too-few", "empty", "empty-dev"])
def test_training_refuses_data_it_cannot_learn_from_and_says_why(train, dev, message):
    calls = []
    with pytest.raises(TrainingRefused, match=message):
        train_heads(train, dev, TrainConfig(hidden=HIDDEN, max_epochs=2), on_epoch=calls.append)
    assert calls == []  # refused before the first epoch, not after minutes of training


def test_a_correction_refuses_an_empty_set_and_pairs_without_text_image_or_a_known_label(table):
    predictor = fake_predictor()
    with pytest.raises(TrainingRefused, match="the correction set is empty: add labelled pairs first"):
        run_correction(predictor, [], None, None)
    with pytest.raises(TrainingRefused, match="the correction set is empty"):
        correct_heads(predictor.heads, synthetic_set(0, 1, labels=[]))
    image = (table["folder"] / "pic_0.png").read_bytes()
    with pytest.raises(ValueError, match="a correction pair needs a text"):
        CorrectionItem("   ", image, "negative")
    with pytest.raises(ValueError, match="a correction pair needs an image"):
        CorrectionItem("fine text", b"", "negative")
    with pytest.raises(ValueError, match="unknown label 'meh'; accepted values: 0, 1, 2, bad"):
        CorrectionItem("fine text", image, "meh")


# --------------------------------------------------------------------------- 5. formula-safe download


def test_a_scored_table_downloads_without_runnable_formulas(tmp_path):
    draw_image(tmp_path / "+sum.png", "positive", seed=1)
    draw_image(tmp_path / "ok.png", "negative", seed=2)
    attacks = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1,1)", "=HYPERLINK(\"http://evil\",\"x\")"]
    frame = pd.DataFrame({
        "id": ["=1+1", "@id", "3", "4", "5", "6"],
        "text": [*attacks, "a normal happy post"],
        "image": ["+sum.png", "ok.png", "ok.png", "", "=missing.png", "ok.png"],
        "label": ["positive", "negative", "neutral", "", "positive", "negative"],
    })
    rows = prepare_pairs(read_table(frame.to_csv(index=False).encode()), label_column="label",
                         id_column="id", images_root=tmp_path)
    result = score_rows(rows, fake_predictor())
    assert result.finished
    assert list(result.frame["status"]) == ["ok", "ok", "ok", "ok", "error", "ok"]

    download = to_safe_csv_bytes(result.frame)
    cells = list(csv.reader(io.StringIO(download.decode("utf-8-sig"))))
    header, body = cells[0], cells[1:]
    assert len(body) == 6
    for line in cells:
        for cell in line:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), f"runnable cell {cell!r}"
    texts = [line[header.index("text")] for line in body]
    assert texts == [f"'{a}" for a in attacks] + ["a normal happy post"]  # kept, only made inert
    assert body[0][header.index("id")] == "'=1+1" and body[0][header.index("image")] == "'+sum.png"
    # Probabilities stay numbers a spreadsheet can chart.
    back = read_table(download)
    assert pd.to_numeric(back["p_text_positive"].replace("", np.nan)).notna().sum() == 5


# --------------------------------------------------------------------------- 6. heads for other encoders


def version_zip(tensors: dict, card: dict, tmp_path, name: str) -> bytes:
    folder = tmp_path / name
    write_version_folder(folder, tensors, card)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in ("weights.safetensors", "card.json"):
            archive.write(folder / file, file)
    return buffer.getvalue()


def test_an_uploaded_version_for_other_encoders_is_refused_with_the_reason(deployed, tmp_path):
    registry, engine, v1 = deployed["registry"], deployed["engine"], deployed["v1"]
    listed = [c["version"] for c in registry.versions()]
    # Made on a machine running a 384-d text encoder: same tensor names, other shapes and ids.
    other_text = FakeTextEncoder(id="text:bundled:minilm-l6:0123", dim=384)
    foreign = version_zip(fake_heads(1, text_dim=384).tensors(), fake_card(other_text), tmp_path, "foreign")
    with pytest.raises(RegistryError) as refused:
        registry.import_zip(foreign, expected=engine.expected())
    message = str(refused.value)
    assert "text_encoder.id differs: file was trained on 'text:bundled:minilm-l6:0123', app runs 'text:fake:1'" in message
    assert "text_encoder.dim differs: file was trained on 384, app runs 8" in message
    assert "tensor text_mean has shape [384], expected [8]" in message

    # Same dims, other encoder weights: shapes fit, yet the vectors would mean something else.
    other_image = FakeImageEncoder(id="image:fake:retrained")
    lookalike = version_zip(fake_heads(2).tensors(), fake_card(image_encoder=other_image), tmp_path, "lookalike")
    with pytest.raises(RegistryError, match="image_encoder.id differs: file was trained on 'image:fake:retrained'"):
        registry.import_zip(lookalike, expected=engine.expected())
    assert [c["version"] for c in registry.versions()] == listed and registry.active_version() == v1

    # A version that fits is accepted, and still not active until someone activates it.
    # (An uploaded card names encoders shipped with the app: the fakes stand in for them here.)
    fitting = version_zip(fake_heads(3).tensors(), {**fake_card(), "text_encoder": {
        "spec": "bundled:minilm-l6", "id": "text:fake:1", "dim": TEXT_DIM}, "image_encoder": {
        "spec": "bundled:efficientnet-lite0", "id": "image:fake:1", "dim": IMAGE_DIM}}, tmp_path, "fitting")
    imported = registry.import_zip(fitting, expected=engine.expected())
    assert registry.active_version() == v1
    assert engine.predictor(imported).card.imported_from is None


def test_a_version_for_other_encoders_that_reached_the_registry_anyway_cannot_be_served(deployed):
    """Imported without checks (an old app, a CLI, a copied folder): the Predictor still refuses it."""
    registry, engine = deployed["registry"], deployed["engine"]
    other_text = FakeTextEncoder(id="text:distilbert-base-uncased:77", dim=TEXT_DIM)
    stray = registry.save(fake_heads(4).tensors(), fake_card(other_text))
    with pytest.raises(HeadMismatch) as refused:
        engine.predictor(stray)
    message = str(refused.value)
    assert "trained on text encoder 'fake-text' (id text:distilbert-base-uncased:77, 8-d)" in message
    assert "'fake-text' (id text:fake:1, 8-d) is loaded" in message
    assert "train a head for these encoders or load the encoders the head names" in message
    with pytest.raises(HeadMismatch):
        engine.predictor_from(*registry.load(stray))


# --------------------------------------------------------------------------- 7. long texts


def test_a_novel_pasted_into_a_cell_is_cut_and_the_row_says_so(encoders):
    """Real bundled MiniLM: a 300-word text is cut at the encoder's 128 tokens, a 6,799-character one
    is first cut at 2,000 characters; both rows are scored and their message says what was dropped."""
    from core.encoders import TEXT_MAX_TOKENS
    from core.io.tables import MAX_TEXT_CHARS

    text_encoder = encoders[0]
    image_encoder = FakeImageEncoder()
    card = {**fake_card(image_encoder=image_encoder),
            "text_encoder": {"spec": text_encoder.spec, "id": text_encoder.id, "dim": text_encoder.dim}}
    torch.manual_seed(0)
    heads = LateFusionHeads(HeadConfig(text_encoder.dim, IMAGE_DIM, HIDDEN, 0.1)).eval()
    predictor = Predictor(text_encoder, image_encoder, heads, card, FeatureStore(None))

    frame = pd.DataFrame({"text": ["a short happy post",
                                   " ".join(["lovely"] * 300),          # 2,100 chars: both caps
                                   ("terrible service " * 400).strip(),  # 6,799 chars
                                   " ".join(f"word{k}" for k in range(150))]})  # < 2,000 chars, > 128 tokens
    rows = prepare_pairs(frame, image_column=None)
    result = score_rows(rows, predictor)
    out = result.frame
    assert result.finished and list(out["status"]) == ["ok", "warning", "warning", "warning"]
    assert out["message"][0] == ""
    token_note = f"text longer than {TEXT_MAX_TOKENS} tokens: only the start was read"
    assert all(token_note in m for m in out["message"][1:])
    assert f"text is 6,799 characters; the model read the first {MAX_TEXT_CHARS:,}" in out["message"][2]
    assert "characters" not in out["message"][3]  # under the character cap: only the token note
    assert out["p_text_positive"].notna().all() and out["prediction"].notna().all()
    assert out["text"][2] == frame["text"][2]  # the scored table keeps the whole text
