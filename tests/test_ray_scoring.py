"""The distributed user's story: a table scored on Ray gives the same rows, statuses and probabilities as
the local engine, bad rows included; a run that stops keeps its finished partitions and the rerun scores
only the missing ones; without Ray, the CLI says how to install it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.io.tables import prepare_pairs, read_table
from core.scoring.batch import PROBABILITY_COLUMNS, score_rows
from core.scoring.distributed import (
    MANIFEST,
    OutputMismatch,
    RayOptions,
    finished_partitions,
    read_scored,
    score_on_ray,
)
from core.scoring.output import with_input_columns
from tests.conftest import make_pair_set, with_bad_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray of 2 CPUs for this module (started here, stopped at the end)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -r requirements-ray.txt)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_table(tmp_path_factory):
    """Drawn pairs followed by bad rows: a broken picture, a path leaving the folder, a missing file, a bad
    label, a text-only row, a blank id and a duplicated id."""
    folder = tmp_path_factory.mktemp("ray_pairs")
    csv = make_pair_set(folder, n_per_class=2, seed=11)
    first = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table = with_bad_rows(csv, {"id": "", "text": "no id here", "image": first["image"][0], "label": "neutral"},
                          {"id": first["id"][1], "text": "same id again", "image": first["image"][2],
                           "label": "negative"})
    table = table.assign(
        note=lambda f: [f"n{i}" for i in range(len(f))],
        created_at=lambda f: [f"2026-12-{i + 1:02d}" for i in range(len(f))])  # text, never parsed as a date
    table.to_csv(csv, index=False)
    return {"csv": csv, "images": folder / "images"}


def local_scores(csv: Path, images: Path, tensors: dict, card: dict, encoders) -> pd.DataFrame:
    """What ``score`` on this machine gives: scored rows, then every input column."""
    from core.features.store import FeatureStore
    from core.scoring.predict import Predictor

    table = read_table(csv)
    rows = prepare_pairs(table, label_column="label", id_column="id", images_root=images)
    predictor = Predictor.from_card(tensors, card, FeatureStore(None), encoders=encoders)
    return with_input_columns(score_rows(rows, predictor).frame, table)


def assert_same_scores(local: pd.DataFrame, distributed: pd.DataFrame) -> None:
    assert list(distributed.columns) == list(local.columns)
    assert distributed["row"].tolist() == local["row"].tolist()
    for column in local.columns:
        if column in PROBABILITY_COLUMNS or column == "confidence":
            np.testing.assert_allclose(distributed[column].to_numpy(float), local[column].to_numpy(float),
                                       atol=1e-5, rtol=0, equal_nan=True, err_msg=column)
        else:
            same = [None if pd.isna(v) else v for v in local[column]]
            assert [None if pd.isna(v) else v for v in distributed[column]] == same, column


class Interrupted(Exception):
    pass


def test_ray_matches_local_scoring_and_a_rerun_after_an_interruption_scores_only_missing_partitions(
        ray_instance, mixed_table, trained_head, encoders, tmp_path):
    from core.registry import read_version_folder

    tensors, card = read_version_folder(trained_head)
    out = tmp_path / "scored"
    columns = {"label_column": "label", "id_column": "id"}

    def stop_after_first(progress):
        raise Interrupted("the user stopped the run")

    options = RayOptions(workers=1, partition_rows=4)
    with pytest.raises(Interrupted):
        score_on_ray(mixed_table["csv"], out, tensors=tensors, card=card, images_root=mixed_table["images"],
                     options=options, on_progress=stop_after_first, **columns)
    kept = finished_partitions(out, 4, "parquet")
    assert len(kept) == 1 and (out / MANIFEST).is_file()
    written = {k: (out / f"part-{k:05d}.parquet").stat().st_mtime_ns for k in kept}

    # The same run again, through the command line: only the missing partitions are scored.
    assert cli.main(["score", "--engine", "ray", "--csv", str(mixed_table["csv"]), "--images",
                     str(mixed_table["images"]), "--head", str(trained_head), "--out", str(out),
                     "--workers", "1", "--partition-rows", "4"]) == 0
    assert finished_partitions(out, 4, "parquet") == [0, 1, 2, 3]
    assert {k: (out / f"part-{k:05d}.parquet").stat().st_mtime_ns for k in kept} == written

    distributed = read_scored(out)
    local = local_scores(mixed_table["csv"], mixed_table["images"], tensors, card, encoders)
    assert_same_scores(local, distributed)
    by_id = distributed.set_index("id")
    for bad in ("bad-image", "escape", "missing", "bad-label"):
        assert by_id.loc[bad, "status"] == "error" and by_id.loc[bad, "message"]
    assert by_id.loc["text-only", "status"] == "ok"
    assert distributed["note"].tolist() == [f"n{i}" for i in range(len(distributed))]  # input columns kept
    assert (distributed["message"].str.contains("duplicate id")).sum() == 2

    # Everything is finished: a third run starts nothing and scores nothing.
    again = score_on_ray(mixed_table["csv"], out, tensors=tensors, card=card, images_root=mixed_table["images"],
                         options=options, **columns)
    assert again.scored == [] and again.skipped == [0, 1, 2, 3]


def test_ray_gives_back_every_text_cell_exactly_however_long(ray_instance, trained_head, tmp_path):
    """The Ray engine's partitions hold each text as uploaded (5,000 characters, odd spaces, any script);
    the model reads the first 2,000 and the row's message says so."""
    from core.registry import read_version_folder
    from tests.test_text_kept_whole import LONG, TEXTS

    tensors, card = read_version_folder(trained_head)
    csv = tmp_path / "posts.csv"
    pd.DataFrame({"text": TEXTS, "image": [""] * len(TEXTS)}).to_csv(csv, index=False)
    out = tmp_path / "scored"
    score_on_ray(csv, out, tensors=tensors, card=card, images_root=tmp_path, options=RayOptions(partition_rows=2))
    scored = read_scored(out)
    assert [t.encode("utf-8") for t in scored["text"]] == [t.encode("utf-8") for t in TEXTS]
    assert f"text is {len(LONG.strip()):,} characters; the model read the first 2,000" in scored["message"][0]


def test_an_output_folder_of_another_table_is_refused_before_any_work(mixed_table, trained_head, tmp_path):
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -r requirements-ray.txt)")
    from core.registry import read_version_folder

    tensors, card = read_version_folder(trained_head)
    out = tmp_path / "scored"
    out.mkdir()
    (out / MANIFEST).write_text('{"input": {"name": "other.csv", "sha256": "0", "rows": 3}}')
    with pytest.raises(OutputMismatch, match="another table"):
        score_on_ray(mixed_table["csv"], out, tensors=tensors, card=card, images_root=mixed_table["images"])


def test_without_ray_the_cli_says_how_to_install_it(mixed_table, trained_head, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as on a machine without it
    status = cli.main(["score", "--engine", "ray", "--csv", str(mixed_table["csv"]), "--head", str(trained_head),
                       "--images", str(mixed_table["images"]), "--out", str(tmp_path / "scored")])
    assert status == 2
    assert "pip install -r requirements-ray.txt" in capsys.readouterr().err


def test_the_batch_page_says_when_the_cluster_cannot_read_the_images(mixed_table, trained_head, encoders, tmp_path,
                                                                     monkeypatch):
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -r requirements-ray.txt)")
    from app.cluster_batch import score_on_cluster
    from core.features.store import FeatureStore
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor

    monkeypatch.setenv("MMSA_RAY_ADDRESS", "local")
    predictor = Predictor.from_card(*read_version_folder(trained_head), FeatureStore(None), encoders=encoders)
    result = score_on_cluster(mixed_table["csv"].read_bytes(), predictor, images_root=tmp_path / "not-shared",
                              columns={"label_column": "label", "id_column": "id"}, work_dir=tmp_path / "work")
    assert result.completed == 0 and result.total == 13 and not result.finished
    assert "not-shared" in result.failure and "readable by every Ray worker" in result.failure


def test_csv_partitions_read_back_in_input_order(tmp_path):
    """Partition files written as CSV read back as text; the rows still come in input order (row 10 after 9)."""
    from core.features.store import FeatureStore
    from core.io.tables import to_safe_csv_bytes
    from tests.conftest import fake_predictor

    rows = prepare_pairs(pd.DataFrame({"text": [f"post {k}" for k in range(12)]}), image_column=None)
    scored = score_rows(rows, fake_predictor(store=FeatureStore(None))).frame
    (tmp_path / MANIFEST).write_text('{"format": "csv", "partitions": 2}')
    for k in range(2):
        (tmp_path / f"part-{k:05d}.csv").write_bytes(to_safe_csv_bytes(scored.iloc[k * 6:(k + 1) * 6]))
    assert read_scored(tmp_path)["row"].tolist() == [str(k) for k in range(12)]


def test_a_parquet_table_is_read_cell_for_cell_like_its_csv(mixed_table, tmp_path):
    from core.scoring.distributed import read_pairs_table

    parquet = tmp_path / "pairs.parquet"
    read_table(mixed_table["csv"]).to_parquet(parquet, index=False)
    pd.testing.assert_frame_equal(read_pairs_table(parquet), read_table(mixed_table["csv"]), check_dtype=False)


def test_with_a_cluster_configured_the_batch_page_offers_it_and_shows_its_results(app_env, tmp_path, monkeypatch):
    """The page's wiring: the choice appears only with MMSA_RAY_ADDRESS, and the cluster run gets the table, the
    images and the columns chosen (the run itself is the story above; here the cluster answers with local
    scores)."""
    import app.cluster_batch
    from core.scoring.batch import score_rows
    from tests.conftest import open_page

    calls = []

    def cluster(csv_bytes, predictor, *, images_root, columns, work_dir, on_progress=None):
        calls.append({"csv": csv_bytes, "images_root": images_root, "columns": columns})
        rows = prepare_pairs(read_table(csv_bytes), **columns, images_root=Path(images_root))
        return score_rows(rows, predictor, on_progress=on_progress)

    csv = make_pair_set(tmp_path, n_per_class=1, seed=5)
    images = sorted((tmp_path / "images").iterdir())

    def upload(at):
        at.file_uploader(key="batch_csv").set_value(("pairs.csv", csv.read_bytes(), "text/csv")).run()
        at.radio(key="batch_image_source").set_value("Upload image files").run()
        at.file_uploader(key="batch_images_files").set_value([(p.name, p.read_bytes(), "image/png")
                                                             for p in images]).run()
        return at

    monkeypatch.delenv("MMSA_RAY_ADDRESS", raising=False)
    assert not [c for c in upload(open_page("batch")).checkbox if c.key == "batch_on_cluster"]

    monkeypatch.setenv("MMSA_RAY_ADDRESS", "ray-head:6379")
    monkeypatch.setattr(app.cluster_batch, "score_on_cluster", cluster)
    at = upload(open_page("batch"))
    offer = at.checkbox(key="batch_on_cluster")
    assert "ray-head:6379" in offer.label
    offer.check().run()
    next(b for b in at.button if b.key == "batch_score").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(calls) == 1 and calls[0]["csv"] == csv.read_bytes()
    assert calls[0]["columns"] == {"text_column": "text", "image_column": "image", "label_column": "label",
                                   "id_column": "id"}
    assert len(at.session_state["batch"]["result"].frame) == 3
