"""The load test's parts work without a browser or a server: its command line answers --help, the
drawn pairs reach the CSVs the users upload, and the report tells equal results from differing ones.
(The load test itself is run by hand: `python bench/load_test.py`, see docs/performance.md.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.load_report import compare, summary
from bench.load_users import Record
from bench.load_workload import CORRECTION_PAIRS, drawn_workload, pairs_csv

ROOT = Path(__file__).resolve().parents[1]


def test_the_load_test_answers_help_from_any_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "load_test.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--explore-users" in done.stdout and "--sweep" in done.stdout


def test_drawn_pairs_are_shared_out_without_overlap(tmp_path):
    workload = drawn_workload(tmp_path, n_batch=5, users=2, per_user=3)
    ids = [p.id for p in workload.batch] + [p.id for user in workload.explore for p in user] + \
          [p.id for p in workload.correction] + [workload.warmup.id]
    assert len(ids) == len(set(ids)) == 5 + 6 + CORRECTION_PAIRS + 1
    table = pd.read_csv(pairs_csv(workload.batch, tmp_path / "batch.csv"))
    assert list(table.columns) == ["id", "text", "image", "label"] and len(table) == 5
    assert all((tmp_path / "images" / name).is_file() for name in table["image"])


def test_the_report_counts_actions_and_compares_what_users_saw():
    chart = [{"name": "Fused", "x": ["negative"], "y": [0.5]}]
    solo, same, other = Record(), Record(), Record()
    for record, y in ((solo, 0.5), (same, 0.5), (other, 0.6)):
        record.time("explore: analyse a pair", 1.0)
        record.seen["explore-0"] = [{"pair": "p1", "chart": [{**chart[0], "y": [y]}]}]
    other.error("explore: analyse a pair", "explore-1: timed out")
    rows = summary({"record": other})
    assert rows == [{"action": "explore: analyse a pair", "n": 1, "p50_s": 1.0, "p95_s": 1.0, "errors": 1}]
    assert compare(solo, same, ["explore-0"])["explore_equal"]
    differing = compare(solo, other, ["explore-0"])
    assert not differing["explore_equal"] and not differing["explore_equal_as_shown"]
    assert abs(differing["explore_max_prob_diff"] - 0.1) < 1e-9
