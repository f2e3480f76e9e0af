"""The benchmark runs end to end and prints its JSON figures (no timing is asserted here: speed is
measured by ``python bench/bench_scoring.py``, on a quiet machine, not by tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"naive_pairs_per_s", "pairs_per_s", "speedup", "cached_speedup", "single_pair_ms_p50",
        "single_pair_ms_p95", "train_s", "peak_rss_mb"}


def test_bench_prints_one_json_object_with_exactly_the_keys_and_the_machine(tmp_path):
    env = {**os.environ, "MMSA_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_scoring.py"), "--n", "8", "--make-pairs",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) == KEYS | {"machine"}
    assert all(isinstance(figures[k], (int, float)) and figures[k] > 0 for k in KEYS)
    machine = figures["machine"]
    assert isinstance(machine["cpu_model"], str) and all(isinstance(v, bool) for v in machine["flags"].values())
    assert machine["matmul_gflops"] > 0
    # The ONNX graphs were built in the user's cache folder, not committed anywhere.
    assert list((tmp_path / "home" / "onnx").glob("*/model.onnx"))


def test_gpu_check_gives_the_cpu_figure_and_says_when_no_gpu_was_measured(tmp_path):
    import torch

    env = {**os.environ, "MMSA_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--pairs", "24", "--make-pairs",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["pairs"] == 24 and figures["cpu_pairs_per_s"] > 0
    if torch.cuda.is_available():  # a GPU machine: fp32 always, autocast where its check passed
        assert figures["gpu_fp32_pairs_per_s"] > 0 and figures["machine"]["gpu"]["name"]
    else:
        assert figures["gpu"] is None and "no GPU figure measured" in done.stderr
        assert not any(key.startswith("gpu_") for key in figures) and figures["machine"]["gpu"] is None
