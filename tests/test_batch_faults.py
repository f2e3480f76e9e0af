"""When a batch run stops midway, on this server or on the cluster: the rows done are kept either way; a
failure the user or the operator can act on (a disk, an encoder, Ray) is one plain message, while a fault
of this program also leaves its traceback in the server's log for whoever fixes it."""
from __future__ import annotations

import logging

import pytest

from app.cluster_batch import score_on_cluster
from core.encoders import EncoderUnavailable
from core.errors import InputError
from core.features.store import FeatureStore
from core.scoring.batch import score_rows

from .conftest import FakeTextEncoder, fake_predictor


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), InputError("the table changed"),
                                   EncoderUnavailable("the text encoder's weights are missing")])
def test_an_expected_failure_midway_keeps_the_rows_and_says_why_in_one_line(table, monkeypatch, caplog, error):
    encoder = FakeTextEncoder()
    real_encode, calls = encoder.encode, []

    def encode(texts):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real_encode(texts)

    monkeypatch.setattr(encoder, "encode", encode)
    result = score_rows(table["rows"], fake_predictor(encoder, store=FeatureStore(None)), chunk_size=4)
    assert result.completed == 4 and len(result.frame) == 4 and not result.finished
    assert result.failure == f"stopped at row 4: {error}"
    assert tracebacks(caplog) == []


def test_a_fault_of_the_program_midway_keeps_the_rows_and_logs_its_traceback(table, caplog):
    predictor = fake_predictor(FakeTextEncoder(fail_on_call=2), store=FeatureStore(None))  # a RuntimeError
    with caplog.at_level(logging.ERROR):
        result = score_rows(table["rows"], predictor, chunk_size=4)
    assert result.completed == 4 and len(result.frame) == 4
    assert "internal error" in result.failure and "text encoder died on call 2" in result.failure
    logged = tracebacks(caplog)
    assert len(logged) == 1 and type(logged[0].exc_info[1]).__name__ == "SimulatedCrash"

    resumed = score_rows(table["rows"], fake_predictor(store=FeatureStore(None)), chunk_size=4,
                         start=result.completed, previous=result.frame)
    assert resumed.finished and resumed.frame["row"].tolist() == list(range(len(table["rows"])))


@pytest.fixture()
def cluster_table(table, tmp_path):
    csv = tmp_path / "pairs.csv"
    table["frame"].to_csv(csv, index=False)
    return csv.read_bytes()


def run_on_cluster(cluster_table, table, tmp_path, monkeypatch, error):
    import core.scoring.distributed

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(core.scoring.distributed, "score_on_ray", failing)
    return score_on_cluster(cluster_table, fake_predictor(store=FeatureStore(None)), images_root=table["folder"],
                            columns={"label_column": "label", "id_column": "id"}, work_dir=tmp_path / "work")


def test_the_cluster_not_reached_is_one_plain_message(cluster_table, table, tmp_path, monkeypatch, caplog):
    from core.scoring.distributed import RayRunFailed

    for error in (ConnectionError("could not reach ray-head:6379"), RayRunFailed("a worker died; 1 of 3 kept")):
        caplog.clear()
        result = run_on_cluster(cluster_table, table, tmp_path, monkeypatch, error)
        assert result.failure == f"on the cluster: {error}" and result.total == len(table["rows"])
        assert tracebacks(caplog) == []


def test_a_fault_of_the_program_on_the_cluster_path_logs_its_traceback(cluster_table, table, tmp_path, monkeypatch,
                                                                        caplog):
    with caplog.at_level(logging.ERROR):
        result = run_on_cluster(cluster_table, table, tmp_path, monkeypatch, KeyError("partitions"))
    assert "internal error" in result.failure and result.completed == 0 and result.total == len(table["rows"])
    logged = tracebacks(caplog)
    assert len(logged) == 1 and isinstance(logged[0].exc_info[1], KeyError)
