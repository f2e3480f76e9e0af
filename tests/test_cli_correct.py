"""The shell user with their own posts: ``correct`` adapts the heads to a labelled CSV (text only, or with
pictures), prints before / after on held-out labels and saves a version; ``eval`` and ``score`` read a
CSV that has no image column at all."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from core import cli
from tests.conftest import NEGATIVE_TEXTS, NEUTRAL_TEXTS, POSITIVE_TEXTS, make_pair_set


@pytest.fixture()
def own_home(tmp_path, monkeypatch):
    """A registry of its own, and no MVSA: the reference set is the project's example pairs (fast)."""
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMSA_MVSA_DIR", str(tmp_path / "no-mvsa"))


def changed_heads(saved: dict, parent: dict) -> set[str]:
    """The heads whose weights differ between two versions' tensors."""
    return {name.split(".")[1] for name, tensor in saved.items()
            if name.startswith("heads.") and not torch.equal(tensor, parent[name])}


def text_only_csv(folder, per_label: int = 8):
    rows = [{"text": f"{text} (post {k})", "label": label}
            for label, texts in (("positive", POSITIVE_TEXTS), ("negative", NEGATIVE_TEXTS), ("neutral", NEUTRAL_TEXTS))
            for k, text in enumerate(texts * (per_label // len(texts) + 1)) if k < per_label]
    csv = folder / "labelled.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.mark.parametrize("pictures", [False, True], ids=["text only", "with pictures"])
def test_correct_adapts_to_a_labelled_csv_and_saves_a_version_named_on_the_last_line(
        own_home, trained_head, tmp_path, capsys, pictures):
    from core.registry import open_registry, read_version_folder

    csv = make_pair_set(tmp_path, n_per_class=8, seed=3) if pictures else text_only_csv(tmp_path)
    images = ["--images", str(tmp_path / "images")] if pictures else []
    code = cli.main(["correct", "--csv", str(csv), *images, "--head", str(trained_head), "--save", "--note", "our posts"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"24 labelled posts ({24 if pictures else 0} with a picture); measured by 5-fold on 24")
    assert any(line.startswith("your posts  before: ") for line in out)
    assert any(line.startswith("your posts   after: ") for line in out)
    assert sum(line.strip().startswith("learning curve:") for line in out) == 3
    assert any(line.startswith("more labels worth giving? ") for line in out)
    assert any(line.startswith("reference (project example pairs") for line in out)
    assert out[-1].startswith("version: ")

    version = out[-1].removeprefix("version: ")
    registry = open_registry()
    card = registry.card(version)
    assert card.note == "our posts" and card.training["kind"] == "adaptation"
    assert card.training["adapted_heads"] == (["fused", "image", "text"] if pictures else ["text"])
    assert registry.active_version() != version  # operators activate it
    # The saved weights are the adapted ones: posts without pictures changed the text head alone.
    parent, _ = read_version_folder(trained_head)
    assert changed_heads(registry.load(version)[0], parent) == ({"fused", "image", "text"} if pictures else {"text"})


def test_correct_without_save_stores_nothing_and_says_why_a_set_is_refused(own_home, trained_head, tmp_path, capsys):
    from core.registry import open_registry

    csv = text_only_csv(tmp_path)
    assert cli.main(["correct", "--csv", str(csv), "--head", str(trained_head)]) == 0
    assert "version:" not in capsys.readouterr().out
    assert [c for c in open_registry().versions() if not c.get("builtin")] == []

    small = tmp_path / "small.csv"
    pd.read_csv(csv).head(5).to_csv(small, index=False)
    assert cli.main(["correct", "--csv", str(small), "--head", str(trained_head)]) == 2
    assert "at least 20 labelled posts" in capsys.readouterr().err


def test_eval_and_score_read_a_csv_without_an_image_column_as_text_only(own_home, trained_head, tmp_path, capsys):
    csv = text_only_csv(tmp_path, per_label=2)
    assert cli.main(["eval", "--csv", str(csv), "--head", str(trained_head)]) == 0
    printed = capsys.readouterr().out
    assert "  text: n=6" in printed and "fused:" not in printed

    out = tmp_path / "scored.csv"
    assert cli.main(["score", "--csv", str(csv), "--head", str(trained_head), "--out", str(out)]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == 6 and set(scored["status"]) == {"ok"}
    assert set(scored["prediction_source"]) == {"text"} and scored["p_fused_positive"].isna().all()

    # A column named otherwise on purpose is still required.
    assert cli.main(["eval", "--csv", str(csv), "--head", str(trained_head), "--image-column", "photo"]) == 2
    assert "missing column 'photo'" in capsys.readouterr().err
