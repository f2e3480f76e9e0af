"""The shell user's story when things go wrong mid-run: the scorer is killed, the disk fills up, two
scorers aim at the same file, the data folder cannot be written. Nothing already scored is lost, a
rerun of the same command finishes the job without scoring a row twice, and the final file is byte
for byte what an uninterrupted run writes."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core import cli
from tests.conftest import make_pair_set

ROOT = Path(__file__).resolve().parents[1]
KILL_AFTER_ROWS = 64  # one chunk on disk, the rest still to do


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    """450 pairs with distinct texts and pictures (long enough to be killed mid-run), plus a column the
    scorer does not use (it must come through)."""
    folder = tmp_path_factory.mktemp("big")
    csv = make_pair_set(folder, n_per_class=150, seed=11)
    frame = pd.read_csv(csv)
    frame["note"] = [f"note {i}" for i in range(len(frame))]
    frame.to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def home():
    """The suite's data folder (conftest): its graphs are usually exported already."""
    return Path(os.environ["MMSA_HOME"])


def score_command(csv: Path, out: Path, head: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", "score", "--csv", str(csv), "--images", str(csv.parent / "images"),
            "--out", str(out), "--head", str(head), *extra]


def run(command, home: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMSA_HOME": str(home)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def reference(big_csv, trained_head, home, tmp_path_factory):
    """The file an uninterrupted run writes (it also fills the data folder's caches)."""
    out = tmp_path_factory.mktemp("reference") / "scored.csv"
    done = run(score_command(big_csv, out, trained_head), home)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def progress_of(out: Path) -> dict | None:
    try:
        return json.loads(out.with_name(out.name + ".progress.json").read_text())
    except (OSError, ValueError):
        return None


def test_a_scorer_killed_with_sigkill_is_finished_by_the_same_command_without_rescoring_a_row(
        big_csv, trained_head, reference, home, tmp_path):
    # The warm data folder without its feature store: the graphs are ready, every pair is encoded anew.
    fresh_home, out = tmp_path / "home", tmp_path / "scored.csv"
    shutil.copytree(home, fresh_home, ignore=shutil.ignore_patterns("features.sqlite*"))
    command = score_command(big_csv, out, trained_head)
    scorer = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "MMSA_HOME": str(fresh_home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (progress_of(out) or {}).get("rows_done", 0) < KILL_AFTER_ROWS:
        assert scorer.poll() is None, "the scorer ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    scorer.send_signal(signal.SIGKILL)
    scorer.wait()
    kept = progress_of(out)["rows_done"]
    assert KILL_AFTER_ROWS <= kept < 450, "the kill must land mid-run"
    on_disk = pd.read_csv(out, encoding="utf-8-sig")
    assert len(on_disk) >= kept  # every finished row is on disk (a chunk cut off mid-write is dropped on resume)

    again = run(command, fresh_home)
    assert again.returncode == 0, again.stderr
    assert f"rows 1–{kept:,} are already scored" in again.stderr
    assert f"scored {450 - kept:,} rows" in again.stdout
    assert out.read_bytes() == reference
    assert progress_of(out) is None  # a finished file has no progress file beside it
    assert pd.read_csv(out, encoding="utf-8-sig")["note"].tolist() == [f"note {i}" for i in range(450)]


def test_a_full_disk_stops_with_one_clear_line_and_the_rerun_completes_the_file(
        big_csv, trained_head, reference, home, tmp_path):
    out = tmp_path / "scored.csv"
    command = score_command(big_csv, out, trained_head)
    limit = len(reference) // 3  # the disk "fills up" a third of the way through

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = run(command, home, preexec_fn=small_disk)
    assert full.returncode == 2
    assert "Traceback" not in full.stderr
    error_lines = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "File too large" in error_lines[0] and "safe" in error_lines[0]
    kept = progress_of(out)["rows_done"]
    assert 0 < kept < 450

    again = run(command, home)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == reference


def test_a_partial_file_of_another_input_is_never_mixed_with_this_one(big_csv, trained_head, home, tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "scored.csv"
    out.write_text("id,prediction\n1,positive\n")
    out.with_name(out.name + ".progress.json").write_text(json.dumps(
        {"fingerprint": {"input_sha256": "another file"}, "rows_done": 1, "bytes_done": 26}))
    args = ["score", "--csv", str(big_csv), "--images", str(big_csv.parent / "images"), "--out", str(out),
            "--head", str(trained_head)]
    monkeypatch.setenv("MMSA_HOME", str(home))
    assert cli.main(args) == 2
    assert "partial run of another job" in capsys.readouterr().err
    assert out.read_text() == "id,prediction\n1,positive\n"  # untouched
    assert cli.main([*args, "--restart"]) == 0
    assert len(pd.read_csv(out, encoding="utf-8-sig")) == 450


def test_a_second_scorer_on_the_same_output_is_refused_while_the_first_writes(tmp_path, capsys, trained_head, big_csv):
    from core.scoring.stream import ResumeError, StreamedCsv

    out = tmp_path / "scored.csv"
    with StreamedCsv(out, {"job": 1}):
        with pytest.raises(ResumeError, match="another scorer is writing"), StreamedCsv(out, {"job": 1}):
            pass
        assert cli.main(["score", "--csv", str(big_csv), "--out", str(out), "--head", str(trained_head)]) == 2
        assert "another scorer is writing" in capsys.readouterr().err


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys, big_csv):
    out = tmp_path / "scored.csv"
    assert cli.main(["score", "--csv", str(big_csv), "--out", str(out), "--resume"]) == 2
    assert "no unfinished run" in capsys.readouterr().err


def test_a_data_folder_that_cannot_be_created_is_one_clear_line(tmp_path, big_csv, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MMSA_HOME", str(blocker / "home"))
    assert cli.main(["score", "--csv", str(big_csv), "--out", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "MMSA_HOME" in err and "cannot be created" in err and "Traceback" not in err
