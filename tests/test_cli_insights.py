"""The shell user's story with drivers, themes and two versions on a saved run: `analyse --drivers`
finds the hashtag planted in a hundred negative posts, `analyse --themes` keeps a copied post in one
theme and the sizes add up, `compare --versions` counts two versions that differ on known rows exactly;
the page's filters apply to each, and bad input is one line with status 2."""
from __future__ import annotations

import json

import pytest

from core import cli
from core.insights.run_themes import themes_folder
from core.insights.theme_store import load_assignment
from core.registry import open_registry, write_version_folder
from tests.conftest import fake_card
from tests.planted_insights import (
    A_RIGHT,
    B_CHANGES,
    B_RIGHT,
    COPIES,
    HASHTAG,
    HASHTAG_POSTS,
    expected_matrix,
    hashtag_run,
    topic_run,
    two_version_run,
)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run_json(tmp_path, *argv) -> dict:
    out = tmp_path / "out.json"
    assert cli.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_a_hashtag_added_to_a_hundred_negative_posts_tops_the_negative_drivers(home, tmp_path, capsys):
    run, tagged = hashtag_run()
    report = run_json(tmp_path, "analyse", run.id, "--drivers")
    assert set(report) == {"rows", "by", "over", "drivers", "themes"} and report["themes"] is None
    assert list(report["drivers"]) == ["negative", "neutral", "positive"]
    top = report["drivers"]["negative"][0]
    assert (top["term"], top["n"]) == (HASHTAG.lower(), HASHTAG_POSTS) and set(top) == {"term", "score", "n"}
    assert top["score"] > 2 * report["drivers"]["negative"][1]["score"]
    assert all(HASHTAG.lower() not in {d["term"] for d in report["drivers"][c]} for c in ("neutral", "positive"))
    assert f"{HASHTAG.lower()} (" in capsys.readouterr().out
    # The page's filters apply: without the hashtag's posts it drives nothing.
    report = run_json(tmp_path, "analyse", run.id, "--drivers", f"--search=-{HASHTAG}")
    assert report["rows"] == run.record.scored - HASHTAG_POSTS
    assert HASHTAG.lower() not in {d["term"] for d in report["drivers"]["negative"]}
    # Per labelled class, the hashtag follows the labels (about half of the tagged posts are labelled negative).
    report = run_json(tmp_path, "analyse", run.id, "--drivers", "--drivers-of", "label", "--terms", "3")
    assert all(len(terms) <= 3 for terms in report["drivers"].values())


def test_duplicated_posts_land_in_one_theme_and_the_sizes_add_up_to_the_run(home, tmp_path):
    run, copies = topic_run()
    report = run_json(tmp_path, "analyse", run.id, "--themes")
    themes = report["themes"]
    assert sum(t["n"] for t in themes) == run.record.scored == report["rows"]
    assert sum(t["share"] for t in themes) == pytest.approx(1.0, abs=1e-5)
    assert all(set(t) == {"id", "terms", "n", "share"} for t in themes)
    assignment = load_assignment(themes_folder(run)).set_index("row")["theme"]
    landed = set(assignment.loc[copies])
    assert len(landed) == 1 and -1 not in landed
    copied_theme = next(t for t in themes if t["id"] in landed)
    assert "#skyfail" in copied_theme["terms"][:3] and copied_theme["n"] >= COPIES
    # Kept with the run and reused; filters count the kept themes over the posts they keep.
    saved = (themes_folder(run) / "themes.json").stat().st_mtime_ns
    report = run_json(tmp_path, "analyse", run.id, "--themes", "--search", "#skyfail")
    assert (themes_folder(run) / "themes.json").stat().st_mtime_ns == saved
    assert report["themes"] == [{"id": copied_theme["id"], "terms": copied_theme["terms"], "n": COPIES, "share": 1.0}]
    # A chosen number of themes is found and kept beside the automatic ones.
    report = run_json(tmp_path, "analyse", run.id, "--themes", "--themes-k", "3")
    assert len([t for t in report["themes"] if t["id"] >= 0]) <= 3 and (themes_folder(run, 3) / "themes.json").is_file()


def test_themes_without_stored_features_or_with_a_bad_number_are_one_line(home, tmp_path, capsys):
    run, _ = hashtag_run(n=200)                     # its texts were never put in the feature store
    assert cli.main(["analyse", run.id, "--themes"]) == 2
    assert "has its text features in the feature store" in capsys.readouterr().err
    assert cli.main(["analyse", run.id, "--themes", "--themes-k", "0"]) == 2
    assert "number of themes 0" in capsys.readouterr().err


def test_two_versions_that_differ_on_known_rows_are_counted_exactly(home, tmp_path, capsys):
    run, a_tensors, b_tensors, classes = two_version_run()
    a = open_registry().save(a_tensors, fake_card(), note="A")
    folder = tmp_path / "version-b"
    write_version_folder(folder, b_tensors, fake_card())
    report = run_json(tmp_path, "compare", run.id, "--versions", a, str(folder))
    n = len(classes)
    assert report["versions"] == {"A": a, "B": str(folder)}
    assert (report["n"], report["changed"], report["left_out"]) == (n, len(B_CHANGES), 0)
    assert report["agree"] == pytest.approx((n - len(B_CHANGES)) / n, abs=1e-6)
    assert report["matrix"] == expected_matrix(classes)
    assert report["matrix"][0][2] == 6 and report["matrix"][2][1] == 4
    assert report["accuracy"] == pytest.approx({"A": (n - B_RIGHT) / n, "B": (n - A_RIGHT) / n}, abs=1e-6)
    # McNemar on 4 posts only A gets right and 6 only B gets right: exact, 2 · P(X ≤ 4), X ~ Bin(10, ½).
    assert report["mcnemar_p"] == pytest.approx(2 * (1 + 10 + 45 + 120 + 210) / 2 ** 10)
    out = capsys.readouterr().out
    assert f"{n - len(B_CHANGES):,} keep their class" in out and "McNemar (exact binomial)" in out
    # The page's filters apply here too: only the posts A calls negative.
    report = run_json(tmp_path, "compare", run.id, "--versions", a, str(folder), "--class", "negative")
    assert report["n"] == classes.count("negative") and report["changed"] == 6


def test_compare_refuses_unknown_versions_in_one_line(home, tmp_path, capsys):
    run, *_ = two_version_run()
    assert cli.main(["compare", run.id, "--versions", "no-such-version", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli.main(["compare", run.id, "--versions", str(tmp_path), str(tmp_path)]) == 2
