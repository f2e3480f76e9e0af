"""core.machine: the block stored next to measured figures, and its one-line description."""
from __future__ import annotations

import json
import time
from datetime import datetime

from core import machine
from core.machine import describe_machine, machine_block

KEYS = {"cpu_model", "arch", "flags", "cores", "python", "torch", "onnxruntime", "numpy", "gpu", "matmul_gflops",
        "measured_at"}


def test_block_has_its_keys_and_types_and_is_json_ready():
    block = machine_block()
    assert set(block) == KEYS
    assert block["cpu_model"] is None or isinstance(block["cpu_model"], str)
    assert isinstance(block["arch"], str)
    assert set(block["flags"]) == {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"}
    assert all(isinstance(v, bool) for v in block["flags"].values())
    assert isinstance(block["cores"]["logical"], int) and block["cores"]["logical"] >= 1
    assert block["cores"]["usable"] is None or 1 <= block["cores"]["usable"] <= block["cores"]["logical"]
    for key in ("python", "numpy"):
        assert isinstance(block[key], str) and block[key]
    for key in ("torch", "onnxruntime"):
        assert block[key] is None or isinstance(block[key], str)
    assert block["gpu"] is None or isinstance(block["gpu"]["name"], str)
    assert isinstance(block["matmul_gflops"], float) and block["matmul_gflops"] > 0
    assert datetime.fromisoformat(block["measured_at"]).utcoffset().total_seconds() == 0
    assert json.loads(json.dumps(block)) == block


def test_matmul_is_measured_once_per_process_and_skipped_when_not_asked():
    machine_block()
    started = time.perf_counter()
    again = machine_block()
    assert time.perf_counter() - started < 0.5 and again["matmul_gflops"] > 0
    assert machine_block(measure=False)["matmul_gflops"] is None


def test_flags_are_false_when_the_cpu_cannot_be_read(monkeypatch):
    monkeypatch.setattr(machine, "_proc_cpuinfo", lambda: (None, None))
    monkeypatch.setattr(machine, "_py_cpuinfo", lambda: (None, None))
    block = machine_block(measure=False)
    assert block["flags"] == dict.fromkeys(block["flags"], False)


def test_describe_names_the_cpu_cores_flags_and_throughput():
    block = {"cpu_model": "AMD EPYC", "arch": "x86_64", "cores": {"logical": 2, "usable": 2},
             "flags": {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx_vnni": False, "amx_tile": False},
             "matmul_gflops": 123.4}
    assert describe_machine(block) == "AMD EPYC, 2 cores, AVX2 + AVX-512 VNNI, 123 GFLOP/s fp32 matmul"
    slim = {**block, "cores": {"logical": 8, "usable": 2}, "flags": dict.fromkeys(block["flags"], False),
            "matmul_gflops": None}
    assert describe_machine(slim) == "AMD EPYC, 2 of 8 cores, no AVX2"
    assert describe_machine(machine_block(measure=False))


def test_a_trained_head_card_carries_its_machine(trained_head):
    card = json.loads((trained_head / "card.json").read_text())
    assert set(card["machine"]) == KEYS and card["machine"]["matmul_gflops"] > 0
