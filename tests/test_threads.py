"""Several people use one server at once: torch's thread setting is the process's, set once when it starts,
and no scoring, prediction or training of one session ever switches it under another's feet."""
from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import torch

from core.features.store import FeatureStore
from core.heads.correction import CorrectionConfig, correct_heads
from core.heads.training import TrainConfig, train_heads
from core.scoring.batch import score_rows
from core.threads import HEAD_THREADS, start_torch_threads, started_threads

from .conftest import HIDDEN, fake_predictor, synthetic_set

REPO = Path(__file__).resolve().parents[1]
# Where a process starts: the only modules that may set torch's threads, through core.threads.
ENTRY_POINTS = {"app/session.py", "core/cli/main.py", "core/scoring/distributed_stages.py"}


def _calls(path: Path, name: str) -> list[int]:
    """Lines of ``path`` that call a function or method named ``name``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == name]


def test_only_core_threads_sets_torch_threads_and_only_entry_points_call_it():
    sources = [p for folder in ("core", "app", "app_pages") for p in (REPO / folder).rglob("*.py")]
    sources.append(REPO / "streamlit_app.py")
    setters = {str(p.relative_to(REPO)) for p in sources if _calls(p, "set_num_threads")}
    assert setters == {"core/threads.py"}
    starters = {str(p.relative_to(REPO)) for p in sources if _calls(p, "start_torch_threads")}
    assert starters == ENTRY_POINTS


def test_scoring_predicting_and_training_never_switch_torch_threads(table, monkeypatch):
    switches = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: switches.append(n))
    predictor = fake_predictor(store=FeatureStore(None))

    result = score_rows(table["rows"], predictor, chunk_size=3)
    predictor.predict_pair("a happy post", (table["folder"] / "pic_0.png").read_bytes())
    train_heads(synthetic_set(30, 1), synthetic_set(12, 2), TrainConfig(hidden=HIDDEN, members=1, max_epochs=2))
    correct_heads(predictor.heads, synthetic_set(6, 3), synthetic_set(20, 4), CorrectionConfig(epochs=2))

    assert result.finished
    assert switches == []


def test_two_sessions_scoring_at_once_run_their_heads_on_the_threads_the_process_started_with(table, monkeypatch):
    """Whatever the setting chosen at start (two here), the heads of every session run on it, however the
    sessions' calls interleave, and a session that starts afterwards gets it too. (torch's setting reads per
    thread: a new thread takes the process's, so it is read inside each session's own calls.)"""
    from core.scoring.predict import Predictor

    seen = set()
    probabilities = Predictor.probabilities

    def watched(self, *args, **kwargs):
        seen.add(torch.get_num_threads())
        return probabilities(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "probabilities", watched)
    before = started_threads() or HEAD_THREADS
    start_torch_threads(2)
    try:
        def session(seed):
            predictor = fake_predictor(store=FeatureStore(None), seed=seed)
            for _ in range(2):
                score_rows(table["rows"], predictor, chunk_size=1)
                predictor.predict_pair("a sunny day", (table["folder"] / "pic_1.png").read_bytes())

        sessions = [threading.Thread(target=session, args=(seed,)) for seed in (1, 2)]
        for thread in sessions:
            thread.start()
        for thread in sessions:
            thread.join(120)
        later = threading.Thread(target=session, args=(3,))
        later.start()
        later.join(120)
        assert seen == {2}
    finally:
        start_torch_threads(before)


def test_the_command_line_sets_threads_once_before_its_command(monkeypatch, capsys):
    from core import cli

    calls = []
    monkeypatch.setattr("core.threads.start_torch_threads", lambda threads=HEAD_THREADS: calls.append(threads))
    with pytest.raises(SystemExit):
        cli.main(["versions", "--no-such-option"])  # refused by the parser: nothing starts
    assert calls == []
    cli.main(["versions"])
    assert calls == [HEAD_THREADS]
