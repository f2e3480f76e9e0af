"""The shell user's story for re-split accuracy: pool labelled CSVs, retrain the recipe (frozen text
encoder, so it takes seconds) on seeded random re-splits, read each split and the mean ± sd."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.features.store import FeatureStore
from core.heads.resplit import REFERENCE_SIZES, resplit_accuracy, split_indices, split_sizes
from tests.conftest import make_pair_set

SEEDS = (3, 4)


@pytest.fixture(scope="module")
def resplit_run(tmp_path_factory, pair_sets):
    """The CLI on the drawn train (24 pairs) + dev (12) CSVs, one extra row whose image is missing."""
    root = tmp_path_factory.mktemp("resplit")
    dev = pd.read_csv(pair_sets["dev"], dtype=str)
    extra = pd.DataFrame([{"id": "no-picture", "text": "lovely day", "image": "nope.png", "label": "positive"}])
    dev_csv = root / "dev_plus.csv"
    pd.concat([dev, extra]).to_csv(dev_csv, index=False)
    out, report_path = root / "out", root / "report.json"
    code = cli.main(["resplit", "--csv", str(pair_sets["train"]), "--csv", str(dev_csv),
                     "--images", str(pair_sets["train"].parent / "images"),
                     "--seeds", *map(str, SEEDS), "--frozen", "--out", str(out), "--json", str(report_path)])
    assert code == 0
    inputs = pd.concat([pd.read_csv(pair_sets["train"], dtype=str), dev])
    return {"out": out, "report": json.loads(report_path.read_text()), "inputs": inputs}


def part(run, seed, name):
    return pd.read_csv(run["out"] / f"split-{seed}" / f"{name}.csv", dtype=str, keep_default_na=False)


def test_split_sizes_are_mvsas_for_its_pool_and_the_same_proportions_otherwise():
    assert split_sizes(sum(REFERENCE_SIZES)) == (3611, 450, 450)
    assert split_sizes(36) == (28, 4, 4)
    assert split_sizes(1000) == (800, 100, 100)
    with pytest.raises(ValueError, match="too small"):
        split_sizes(12)


def test_the_same_seed_gives_the_same_split_and_other_seeds_other_splits():
    first, again, other = split_indices(500, 7), split_indices(500, 7), split_indices(500, 8)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert not np.array_equal(np.sort(first[2]), np.sort(other[2]))
    assert sorted(np.concatenate(first).tolist()) == list(range(500))


def test_each_split_has_the_proportional_sizes_and_its_parts_are_disjoint_and_cover_the_pool(resplit_run):
    report, out = resplit_run["report"], resplit_run["out"]
    protocol = report["protocol"]
    assert protocol["pool"] == 36 and protocol["rows_read"] == 37 and protocol["frozen"] is True
    assert protocol["sizes"] == {"train": 28, "dev": 4, "test": 4}
    assert len(protocol["unusable"]) == 1 and "image file not found" in protocol["unusable"][0]
    pool = pd.read_csv(out / "pool.csv", dtype=str)
    assert sorted(pool["id"]) == sorted(resplit_run["inputs"]["id"])
    for seed, entry in zip(SEEDS, report["splits"]):
        assert entry["seed"] == seed
        assert (entry["n_train"], entry["n_dev"], entry["n_test"]) == (28, 4, 4)
        ids = {name: set(part(resplit_run, seed, name)["id"]) for name in ("train", "dev", "test")}
        assert [len(v) for v in ids.values()] == [28, 4, 4]
        assert not (ids["train"] & ids["dev"] or ids["train"] & ids["test"] or ids["dev"] & ids["test"])
        assert ids["train"] | ids["dev"] | ids["test"] == set(pool["id"])
        # the parts are the ones split_indices draws for that seed
        train, dev, test = split_indices(36, seed)
        assert sorted(part(resplit_run, seed, "test")["pool_index"].astype(int)) == sorted(test.tolist())
        assert (out / f"split-{seed}" / "head" / "card.json").is_file()
    tests = [set(part(resplit_run, seed, "test")["id"]) for seed in SEEDS]
    assert tests[0] != tests[1]


def test_the_json_has_every_split_and_a_summary_whose_mean_and_sd_are_those_of_the_splits(resplit_run):
    report = resplit_run["report"]
    assert json.loads((resplit_run["out"] / "resplit.json").read_text())["splits"] == report["splits"]
    for head in ("text", "image", "fused"):
        for metric in ("accuracy", "weighted_f1"):
            values = [entry[head][metric] for entry in report["splits"]]
            assert all(0.0 <= v <= 1.0 for v in values)
            summary = report["summary"][head][metric]
            assert summary["mean"] == pytest.approx(np.mean(values))
            assert summary["sd"] == pytest.approx(np.std(values, ddof=1))
            assert (summary["min"], summary["max"]) == (min(values), max(values))
    assert report["summary"]["fused"]["accuracy"]["mean"] >= 0.7  # the drawn pairs are easy


def test_missing_csv_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["resplit", "--csv", str(tmp_path / "absent.csv"), "--images", str(tmp_path),
                     "--seeds", "1", "--frozen", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "CSV not found" in capsys.readouterr().err


def test_an_unlabelled_or_too_small_pool_is_a_clear_error(tmp_path, encoders):
    csv = make_pair_set(tmp_path, n_per_class=2, seed=5)
    images = tmp_path / "images"
    store = FeatureStore(None)
    with pytest.raises(ValueError, match="too small"):
        resplit_accuracy([csv], images, tmp_path / "out", seeds=[1], frozen=True, store=store, encoders=encoders)
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(csv, dtype=str).assign(label="").to_csv(unlabelled, index=False)
    with pytest.raises(ValueError, match="no usable labelled pairs.*label is empty"):
        resplit_accuracy([unlabelled], images, tmp_path / "out", seeds=[1], frozen=True, store=store,
                         encoders=encoders)
    with pytest.raises(ValueError, match="seeds repeat"):
        resplit_accuracy([csv], images, tmp_path / "out", seeds=[1, 1], frozen=True, store=store, encoders=encoders)


def test_attached_resplit_figures_sit_beside_the_test_figures_on_home(resplit_run, trained_head, tmp_path,
                                                                      monkeypatch):
    """``resplit --attach`` records the summary in a head's card; Home then shows the fixed-split test
    score and the re-split mean ± sd side by side, with the machine they were measured on."""
    import shutil

    from core.heads.resplit import attach_to_card
    from tests.conftest import open_page, texts

    head = tmp_path / "head"
    shutil.copytree(trained_head, head)
    card = json.loads((head / "card.json").read_text())
    card["metrics"]["test"] = card["metrics"]["dev"]  # a head whose card records test figures
    (head / "card.json").write_text(json.dumps(card))
    weights_before = (head / "weights.safetensors").read_bytes()
    block = attach_to_card(resplit_run["report"], head)
    assert (head / "weights.safetensors").read_bytes() == weights_before
    assert json.loads((head / "card.json").read_text())["resplit"] == block
    assert block["seeds"] == list(SEEDS) and block["frozen"] and block["machine"]["cpu_model"]

    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMSA_HEAD_DIR", str(head))
    monkeypatch.setenv("MMSA_MVSA_DIR", str(tmp_path / "no-mvsa-here"))
    at = open_page("home")
    table = at.dataframe[0].value
    fused = table[table["Branch"].str.contains("usion|used", case=False)].iloc[0]
    summary = resplit_run["report"]["summary"]["fused"]["accuracy"]
    assert fused[f"Accuracy, {len(SEEDS)} re-splits"] == f"{100 * summary['mean']:.1f} ± {100 * summary['sd']:.1f}%"
    assert f"{len(SEEDS)} random splits" in texts(at) and "frozen text encoder" in texts(at)
