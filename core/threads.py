"""CPU thread settings for the small matrix work of the heads."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread():
    """The heads are a few small matmuls: one thread does them in about a millisecond, while a
    thread pool can cost tens of ms per op waiting for a core on a busy machine (measured: the
    warm-store scoring pass went from ~3.5 ms to ~0.2 ms a row on a loaded 2-core box). Training
    keeps the process's threads: on a quiet 2-core machine two threads train the heads 1.35× faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
