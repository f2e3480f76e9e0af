"""The analysis benchmark runs end to end on a small run and prints its JSON figures (speed itself is
measured by ``python bench/bench_analysis.py --rows N``, on a quiet machine, not by tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"open_ms", "filter_search_ms", "breakdown_ms", "weekly_ms", "weekly_first_ms", "gallery_ms"}


def test_bench_prints_a_time_per_operation_the_memory_and_the_machine(tmp_path):
    env = {**os.environ, "MMSA_BENCH_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_analysis.py"), "--rows", "3000", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(figures) and all(figures[k] > 0 for k in KEYS)
    assert figures["rows"] == 3000 and figures["memory_growth_mb"] >= 0 and figures["matching_posts"] >= 0
    assert isinstance(figures["machine"]["cpu_model"], str)
    assert len(list((tmp_path / "home" / "runs").iterdir())) == 1  # kept where MMSA_BENCH_HOME said
