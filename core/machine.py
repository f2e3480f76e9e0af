"""The machine a figure was measured on: CPU model, the instruction-set flags that decide which int8 /
float kernels run, core counts, library versions and a one-second fp32 matmul throughput.

Speed figures (``eval --json``, the benchmark's JSON, a head card's training time) mean little
without the machine behind them; ``machine_block()`` is stored next to them and
``describe_machine()`` turns it into one line for people.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys
import time
from datetime import datetime, timezone

# Block key → the /proc/cpuinfo flag that says the CPU has it.
FLAGS = {"avx2": "avx2", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
         "amx_tile": "amx_tile"}
MATMUL_N = 1024
MATMUL_SECONDS = 1.0


def _proc_cpuinfo() -> tuple[str | None, set[str] | None]:
    """(model name, flags) of the first processor in /proc/cpuinfo; None for what cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None, None
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if model is None and key == "model name":
            model = value.strip() or None
        elif flags is None and key in ("flags", "Features"):
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return model, flags


def _py_cpuinfo() -> tuple[str | None, set[str] | None]:
    """The same from py-cpuinfo when it happens to be installed (it is not a dependency)."""
    try:
        import cpuinfo  # type: ignore[import-not-found]

        info = cpuinfo.get_cpu_info()
    except Exception:  # not installed, or it failed on this platform
        return None, None
    flags = info.get("flags")
    return info.get("brand_raw") or None, (set(flags) if flags else None)


def _version(module: str) -> str | None:
    """The installed version of a module, or None when it is not there. A module already imported
    reports its own ``__version__``; others are read from the package metadata (no heavy import)."""
    loaded = sys.modules.get(module)
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return loaded.__version__
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def matmul_gflops(n: int = MATMUL_N, seconds: float = MATMUL_SECONDS) -> float:
    """fp32 n×n numpy matmul throughput in GFLOP/s (2·n³ per product), repeated for about ``seconds``
    of wall time after one warm-up product; rounded to 0.1. Measured once per process."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
    reps = 0
    started = time.perf_counter()
    while True:
        np.matmul(a, b, out=out)
        reps += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    return round(2.0 * n ** 3 * reps / elapsed / 1e9, 1)


def _gpu() -> dict | None:
    """The GPU block, without importing torch when nothing else has (a GPU is only used through torch)."""
    if "torch" not in sys.modules:
        return None
    from core.device import gpu_block
    return gpu_block()


def machine_block(measure: bool = True) -> dict:
    """A JSON-ready description of this machine, to store next to figures measured on it.

    Keys:

    - ``cpu_model`` (str | None): /proc/cpuinfo "model name", else ``platform.processor()``;
    - ``arch`` (str): ``platform.machine()``;
    - ``flags`` (dict[str, bool]): ``avx2``, ``avx512f``, ``avx512_vnni``, ``avx_vnni``, ``amx_tile``
      from the CPU flags (all False where they cannot be read);
    - ``cores`` (dict): ``logical`` = ``os.cpu_count()``, ``usable`` = the CPUs this process may run
      on (``os.sched_getaffinity``; None where the platform has no such call);
    - ``python``, ``torch``, ``onnxruntime``, ``numpy`` (str | None): versions, None when absent;
    - ``gpu`` (dict | None): the CUDA GPU torch sees (``core.device.gpu_block``: name, memory, count,
      CUDA and cuDNN versions, bf16 support), None without one;
    - ``matmul_gflops`` (float | None): fp32 1024×1024 numpy matmul GFLOP/s over about one second
      (measured once per process), None when ``measure`` is False;
    - ``measured_at`` (str): UTC ISO-8601 time of this call, to the second.
    """
    model, flags = _proc_cpuinfo()
    if model is None or flags is None:
        alt_model, alt_flags = _py_cpuinfo()
        model = model or alt_model
        flags = flags if flags is not None else alt_flags
    model = model or platform.processor() or None
    flags = flags or set()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "cpu_model": model,
        "arch": platform.machine(),
        "flags": {key: name in flags for key, name in FLAGS.items()},
        "cores": {"logical": os.cpu_count(), "usable": usable},
        "python": platform.python_version(),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "gpu": _gpu(),
        "matmul_gflops": matmul_gflops() if measure else None,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def describe_machine(block: dict) -> str:
    """One line for people, e.g. "AMD EPYC, 2 cores, AVX2 + AVX-512 VNNI, 123 GFLOP/s fp32 matmul"."""
    parts = [block.get("cpu_model") or block.get("arch") or "unknown CPU"]
    cores = block.get("cores") or {}
    logical, usable = cores.get("logical"), cores.get("usable")
    if usable and logical and usable < logical:
        parts.append(f"{usable} of {logical} cores")
    elif usable or logical:
        n = usable or logical
        parts.append(f"{n} core{'s' if n != 1 else ''}")
    flags = block.get("flags") or {}
    names = []
    if flags.get("avx2"):
        names.append("AVX2")
    if flags.get("avx512_vnni"):
        names.append("AVX-512 VNNI")
    elif flags.get("avx512f"):
        names.append("AVX-512")
    if flags.get("avx_vnni"):
        names.append("AVX-VNNI")
    if flags.get("amx_tile"):
        names.append("AMX")
    if names:
        parts.append(" + ".join(names))
    elif str(block.get("arch", "")).lower() in ("x86_64", "amd64", "i686", "x86"):
        parts.append("no AVX2")
    gpu = block.get("gpu")
    if gpu:
        parts.append(f"GPU {gpu.get('name')}")
    if block.get("matmul_gflops") is not None:
        parts.append(f"{block['matmul_gflops']:.0f} GFLOP/s fp32 matmul")
    return ", ".join(parts)
