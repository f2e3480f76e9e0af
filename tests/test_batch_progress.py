"""The progress a long batch run reports: its time left follows the current pace, not the first chunk."""
import time

import pandas as pd
import pytest

import core.scoring.batch as batch


def test_time_left_follows_the_pace_of_the_last_chunk(monkeypatch):
    """A first chunk that costs nothing (its pairs were already in the feature store) must not promise
    'about 2 s left' for a run that takes far longer: no estimate until the pace is known, then the
    pace of the chunks that do the work."""
    seconds_per_chunk = iter([0.0, 0.05, 0.05, 0.05])

    def chunk_costing_its_time(rows, predictor):
        time.sleep(next(seconds_per_chunk))
        return pd.DataFrame({"status": ["ok"] * len(rows)})

    monkeypatch.setattr(batch, "score_chunk", chunk_costing_its_time)
    reports = []
    result = batch.score_rows(list(range(256)), predictor=None, chunk_size=64, on_progress=reports.append)
    assert result.completed == 256 and [p.done for p in reports] == [64, 128, 192, 256]
    assert reports[0].eta_s is None  # one chunk says nothing about the pace
    # After the second chunk: 128 rows left at ~64 rows per 0.05 s -> about 0.1 s (the old average
    # over both chunks said half that).
    assert reports[1].eta_s == pytest.approx(128 / reports[1].recent_rows_per_s)
    assert 0.07 <= reports[1].eta_s <= 0.5
    assert reports[-1].eta_s == 0


def test_every_chunk_holds_its_probabilities_as_floats_even_a_chunk_of_bad_or_text_only_rows(table):
    """A chunk whose rows all lack a picture (or all failed) has the same float columns as any other, with
    NaN where a head has no answer, so chunks save, concatenate and write as CSV alike."""
    from core.features.store import FeatureStore
    from core.io.tables import prepare_pairs

    from .conftest import fake_predictor

    frame = pd.DataFrame({"text": ["", "only words here", "more words", "a pair"],
                          "image": ["nope.png", "", "", "pic_0.png"]})
    rows = prepare_pairs(frame, images_root=table["folder"])
    chunks = [chunk for chunk, _ in batch.scored_chunks(rows, fake_predictor(store=FeatureStore(None)), chunk_size=1)]
    assert [c["status"][0] for c in chunks] == ["error", "ok", "ok", "ok"]
    for chunk in chunks:
        assert all(chunk[column].dtype == "float64" for column in [*batch.PROBABILITY_COLUMNS, "confidence"])
    assert chunks[0][batch.PROBABILITY_COLUMNS].isna().all(axis=None) and chunks[0]["confidence"].isna().all()
    assert chunks[1]["p_image_positive"].isna().all() and chunks[1]["p_text_positive"].notna().all()
