"""Torch's CPU threads: set once when a process starts, never switched per call.

``torch.set_num_threads`` is process-wide: every thread started after a call takes its value. Switching
it around each call (one thread for the heads, then back) races between the sessions of one server: one
session's "back" undoes another's "one", so a session's heads could run on a contended pool, or the
whole server stay on one thread. So each entry point sets it once, before any work: the app when it loads its engine (``app/session.py``), the
command line before it runs a command (``core/cli/main.py``), a Ray actor when it starts
(``core/scoring/distributed_stages.py``), the benchmarks at their start. Nothing else calls
``torch.set_num_threads`` (a test checks that).

Why one thread is the default: torch on the CPU here only runs the heads (a few small matmuls) and trains
them; the encoders run in ONNX Runtime, whose sessions have their own threads (``MMSA_ORT_THREADS``, the
usable cores by default). Measured on the shared 2-core box: the heads on a 64-row chunk run at 310
chunks/s on one thread and 5.4 on two when other work shares the cores (a pool thread waits for a core on
every op); training the heads is as fast on one thread as on two on a quiet spell and 6× faster on a
contended one (3 epochs 3.3 vs 19.7 s); on a server, parallel work comes from its sessions, not from
one session's ops. Only the commands that fine-tune the text encoder in PyTorch (a transformer's
backward pass, where a thread pool pays) keep torch's own default, all the cores.
"""
from __future__ import annotations

import threading

import torch

# Threads for the torch work of a process that serves or scores (the heads, their training).
HEAD_THREADS = 1

_lock = threading.Lock()
_started: int | None = None


def start_torch_threads(threads: int | None = HEAD_THREADS) -> int:
    """Set torch's intra-op threads for this process, at its start: ``threads`` (default one, see the
    module's docstring), or torch's own default (the cores) when None. Call it once per process,
    before any torch work; a later call with the same setting does nothing. Returns the threads torch
    now uses."""
    global _started
    with _lock:
        if threads is not None:
            threads = max(1, int(threads))
            if _started != threads:
                torch.set_num_threads(threads)
        _started = torch.get_num_threads()
        return _started


def started_threads() -> int | None:
    """The threads this process set at its start (``start_torch_threads``), or None when it never did."""
    return _started
