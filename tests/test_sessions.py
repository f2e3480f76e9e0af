"""Two people use the app at once, in one process: one scores a table over and over while the other
trains a correction (and then a third trains another). They share one Engine: the encoders, the feature
store and the served heads are read-only to them; a correction is its own copy until it is saved and
activated in the registry, which is the one thing that changes what everybody is served.

Threads stand in for the Streamlit sessions (Streamlit runs each session's script in its own thread).
The encoders are the light fakes of conftest.py: what is shared here is the bookkeeping.
"""
from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import torch

from core.features.store import FeatureStore
from core.heads.correction import CorrectionConfig
from core.heads.correction_set import CorrectionItem, corrected_card, run_correction
from core.scoring.batch import score_rows

from .conftest import assert_same_weights, serve_v1, snapshot, synthetic_set

CONFIG = CorrectionConfig(epochs=12, replay_pairs=128)


def in_session(target, *args, **kwargs):
    """Run ``target`` in its own thread the way a Streamlit session would (torch's threads are the
    process's, set once at its start: conftest.py)."""
    box = {}

    def body():
        try:
            box["value"] = target(*args, **kwargs)
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, box


def result_of(thread, box, timeout: float = 120):
    thread.join(timeout)
    assert not thread.is_alive(), "a session hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture()
def app(tmp_path, table):
    """One process of the app: a registry with an active version v1 and the Engine every session shares."""
    registry, engine, v1 = serve_v1(tmp_path, FeatureStore(tmp_path / "features.sqlite"))
    folder = table["folder"]
    corrections = {
        "sarcasm": [CorrectionItem(f"oh great, another monday #{k}", (folder / f"pic_{k}.png").read_bytes(),
                                   "negative", source="test") for k in range(4)],
        "praise": [CorrectionItem(f"not bad at all #{k}", (folder / f"pic_{k}.png").read_bytes(),
                                  "positive", source="test") for k in range(5, 9)],
    }
    return {"engine": engine, "registry": registry, "v1": v1, "rows": table["rows"], "corrections": corrections,
            "replay": synthetic_set(200, 3), "check": synthetic_set(60, 4)}


def correct(app, name: str, predictor, **kwargs):
    return run_correction(predictor, app["corrections"][name], app["replay"], app["check"], CONFIG, **kwargs)


def test_scoring_in_one_session_while_another_trains_gives_the_solo_results(app):
    engine, registry, v1, rows = app["engine"], app["registry"], app["v1"], app["rows"]
    served = engine.predictor()
    served_weights = snapshot(served.heads)
    solo_scores = result_of(*in_session(score_rows, rows, served, chunk_size=3)).frame
    solo_correction = result_of(*in_session(correct, app, "sarcasm", served))

    # Session A scores the table again and again until session B's correction is done.
    passes: list[pd.DataFrame] = []
    training_done = threading.Event()
    overlapped = []

    def keep_scoring():
        while not training_done.is_set() or len(passes) < 2:
            passes.append(score_rows(rows, engine.predictor(), chunk_size=3).frame)

    def on_epoch(row):
        # Make sure a whole scoring pass runs in the middle of the training, however threads are scheduled.
        if row["epoch"] == 2:
            before, deadline = len(passes), time.monotonic() + 30
            while len(passes) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append(len(passes) > before)

    def train():
        try:
            return correct(app, "sarcasm", engine.predictor(), on_epoch=on_epoch)
        finally:
            training_done.set()

    scorer = in_session(keep_scoring)
    trainer = in_session(train)
    run = result_of(*trainer)
    result_of(*scorer)

    assert overlapped == [True]
    assert len(passes) >= 2
    for frame in passes:
        pd.testing.assert_frame_equal(frame, solo_scores)
    # The served heads are bit-identical and still in eval mode; the correction lives in its own copy.
    assert_same_weights(snapshot(served.heads), served_weights)
    assert not served.heads.training
    assert run.model is not served.heads
    assert_same_weights(snapshot(run.model), snapshot(solo_correction.model))  # scoring did not disturb it
    assert not all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), served_weights.values()))

    # Saving the correction lists it, but nobody is served it yet.
    card = corrected_card(served.card, run, reference_name="synthetic", base_version=v1, config=CONFIG)
    v2 = registry.save(run.model.tensors(), card, note="sarcasm", parent=v1)
    assert v2 in [c["version"] for c in registry.versions()]
    assert engine.active_version() == v1 and engine.predictor() is served
    pd.testing.assert_frame_equal(score_rows(rows, engine.predictor(), chunk_size=3).frame, solo_scores)

    # Activating it is what changes the version every session gets on its next run.
    registry.activate(v2)
    assert engine.active_version() == v2
    now_served = engine.predictor()
    assert now_served is not served
    assert_same_weights(snapshot(now_served.heads), snapshot(run.model))
    rescored = score_rows(rows, now_served, chunk_size=3).frame
    assert not rescored["p_fused_negative"].equals(solo_scores["p_fused_negative"])
    # A session that still holds the old predictor (mid-run) keeps getting the old answers.
    pd.testing.assert_frame_equal(score_rows(rows, served, chunk_size=3).frame, solo_scores)
    assert registry.rollback() == v1 and engine.predictor() is served


def test_two_sessions_training_corrections_at_once_each_get_their_solo_result(app):
    """Each session's correction is its own: the same settings give the same weights whether or not
    another session trains at that moment (dropout's shared random generator must not leak between them)."""
    served = app["engine"].predictor()
    served_weights = snapshot(served.heads)
    solo = {name: result_of(*in_session(correct, app, name, served)) for name in ("sarcasm", "praise")}

    sessions = {name: in_session(correct, app, name, served) for name in ("sarcasm", "praise")}
    together = {name: result_of(*session) for name, session in sessions.items()}

    for name in ("sarcasm", "praise"):
        assert_same_weights(snapshot(together[name].model), snapshot(solo[name].model))
        assert together[name].history == solo[name].history
    assert_same_weights(snapshot(served.heads), served_weights)
    assert app["registry"].active_version() == app["v1"]
