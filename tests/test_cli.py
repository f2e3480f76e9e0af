"""The shell user's story: score a CSV (bad rows included), score it again for free, evaluate with
JSON metrics, train a head, list encoders."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from core import cli
from tests.conftest import make_pair_set, with_bad_rows


@pytest.fixture()
def scoring_csv(tmp_path):
    csv = make_pair_set(tmp_path, n_per_class=3, seed=7)
    with_bad_rows(csv).to_csv(csv, index=False)
    return csv


def images_of(csv):
    return str(csv.parent / "images")


def test_score_writes_three_probability_sets_and_row_errors_then_rescoring_encodes_nothing(
        scoring_csv, trained_head, tmp_path, monkeypatch, capsys):
    from core.scoring import predict

    loaded = []
    original = predict.load_default_predictor

    def remember(*args, **kwargs):  # keep the predictor to read its encoders' counters
        loaded.append(original(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(predict, "load_default_predictor", remember)
    out = tmp_path / "scored.csv"
    args = ["score", "--csv", str(scoring_csv), "--images", images_of(scoring_csv), "--out", str(out), "--head", str(trained_head)]
    assert cli.main(args) == 0
    scored = pd.read_csv(out)
    assert len(scored) == 14
    for head in ("text", "image", "fused"):
        for label in ("negative", "neutral", "positive"):
            assert f"p_{head}_{label}" in scored.columns
    by_id = scored.set_index("id")
    assert by_id.loc["bad-image", "status"] == "error"
    assert "escape" in by_id.index and by_id.loc["escape", "status"] == "error"
    assert "outside" in by_id.loc["escape", "message"] or "not allowed" in by_id.loc["escape", "message"].lower()
    assert by_id.loc["missing", "status"] == "error"
    assert by_id.loc["bad-label", "status"] == "error" and "accepted" in by_id.loc["bad-label", "message"]
    text_only = by_id.loc["text-only"]
    assert text_only["status"] == "ok" and pd.isna(text_only["p_fused_positive"])
    assert text_only["prediction_source"] == "text"
    good = scored[scored["status"] == "ok"]
    assert good["prediction"].isin(["negative", "neutral", "positive"]).all()
    first_text, first_image = loaded[0].text_encoder.n_encoded, loaded[0].image_encoder.n_encoded
    assert first_text > 0 and first_image > 0

    assert cli.main(args) == 0  # the same CSV again: every feature comes from the store
    assert loaded[1].text_encoder.n_encoded == 0 and loaded[1].image_encoder.n_encoded == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), scored)


def test_eval_json_has_accuracy_weighted_f1_and_confusion_matrix_per_head(scoring_csv, trained_head, tmp_path):
    report_path = tmp_path / "metrics.json"
    assert cli.main(["eval", "--csv", str(scoring_csv), "--images", images_of(scoring_csv), "--head", str(trained_head), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n"] == 10 and report["row_errors"] == 4
    for head in ("text", "image", "fused"):
        assert 0.0 <= report[head]["accuracy"] <= 1.0
        assert 0.0 <= report[head]["weighted_f1"] <= 1.0
        matrix = report[head]["confusion_matrix"]
        assert len(matrix) == 3 and sum(map(sum, matrix)) == report[head]["n"]
        assert 0.0 <= report[head]["ece"] <= 1.0
    assert report["fused"]["n"] == 9  # the text-only row has no fused result
    # The drawn pairs are easy: a head trained on their siblings gets most of them right.
    assert report["fused"]["accuracy"] >= 0.7
    # The figures carry the machine they were measured on.
    assert isinstance(report["machine"]["cpu_model"], str) and all(isinstance(v, bool) for v in report["machine"]["flags"].values())


def test_train_writes_a_version_folder_with_card_and_metrics(trained_head):
    card = json.loads((trained_head / "card.json").read_text())
    assert (trained_head / "weights.safetensors").stat().st_size > 0
    assert card["text_encoder"]["dim"] == 1152 and card["image_encoder"]["dim"] == 1280
    assert set(card["temperatures"]) == {"text", "image", "fused"}
    assert card["metrics"]["dev"]["fused"]["accuracy"] >= 0.7
    assert card["training"]["n_train"] == 24


def test_missing_columns_are_a_clear_error(tmp_path, trained_head, capsys):
    csv = tmp_path / "wrong.csv"
    csv.write_text("caption,picture\nhello,a.png\n")
    code = cli.main(["score", "--csv", str(csv), "--out", str(tmp_path / "o.csv"), "--head", str(trained_head)])
    assert code == 2
    err = capsys.readouterr().err
    assert "text" in err and "caption" in err


def test_encoders_lists_bundled_specs_as_loading(capsys):
    assert cli.main(["encoders"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith(("text ", "image "))}
    for spec in ("bundled:minilm-l6", "bundled:efficientnet-lite0"):
        assert re.search(r"\bloads\s+\d+-d\s+id \S+", rows[spec]), rows[spec]
    assert "unavailable:" in rows["distilbert-base-uncased"] and "loads" not in rows["distilbert-base-uncased"]



def test_the_cli_serves_the_same_head_as_the_app_when_mmsa_head_dir_is_set(trained_head, monkeypatch):
    from core.scoring.predict import load_default_predictor

    monkeypatch.setenv("MMSA_HEAD_DIR", str(trained_head))
    served = load_default_predictor()
    assert served.card.weights_sha256 == json.loads((trained_head / "card.json").read_text())["weights_sha256"]


def test_score_refuses_an_unwritable_output_before_scoring_anything(scoring_csv, trained_head, tmp_path, capsys,
                                                                    monkeypatch):
    import core.scoring.batch

    def must_not_score(*args, **kwargs):
        raise AssertionError("scored rows before checking where to write them")

    monkeypatch.setattr(core.scoring.batch, "score_rows", must_not_score)
    for out, reason in ((tmp_path / "no" / "such" / "dir" / "x.csv", "does not exist"), (tmp_path, "is a folder")):
        code = cli.main(["score", "--csv", str(scoring_csv), "--images", str(scoring_csv.parent / "images"),
                         "--out", str(out), "--head", str(trained_head)])
        assert code == 2
        assert reason in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_users_mistake_is_one_line_but_a_fault_of_the_program_keeps_its_traceback(
        tmp_path, monkeypatch, capsys, caplog):
    from core.cli import encoders as encoder_commands

    missing = tmp_path / "nowhere.csv"
    assert cli.main(["score", "--csv", str(missing), "--out", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "error: file not found: nowhere.csv" in err and "Traceback" not in err

    def broken(args):
        raise ValueError("an internal inconsistency")  # a bug, not bad input: no InputError

    monkeypatch.setattr(encoder_commands, "cmd_encoders", broken)
    with caplog.at_level("ERROR", logger="core.cli"):
        assert cli.main(["encoders"]) == 1
    record = next(r for r in caplog.records if r.name == "core.cli")
    assert "internal error in `encoders`" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is ValueError
