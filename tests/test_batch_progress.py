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
