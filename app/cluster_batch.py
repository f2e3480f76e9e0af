"""The batch page's table scored on a Ray cluster, returned as the local engine's BatchResult.

The page offers it when ``MMSA_RAY_ADDRESS`` names a cluster (``HEAD_IP:6379``, ``auto`` for the
cluster this server belongs to, or ``local`` to start a Ray on this server). The run writes partition
files into a folder of the browser tab, keyed by the table, the columns, the images folder and the head:
scoring the same table again on the cluster after a stop scores only the missing partitions. The
cluster's workers read the images at the path this server sees them, so the images must sit on a
filesystem every node mounts at that path (an upload to this server is not, unless the cluster is this
machine).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from core import config
from core.scoring.batch import BatchResult, Progress, empty_result, expected_failures, result_columns

log = logging.getLogger(__name__)


def cluster_address() -> str | None:
    """The configured Ray address, or None when the page should not offer a cluster."""
    return config.ray_address()


def score_on_cluster(csv_bytes: bytes, predictor, *, images_root: str | Path | None, columns: dict,
                     work_dir: Path, on_progress: Callable[[Progress], None] | None = None) -> BatchResult:
    """Score the uploaded table on the cluster with ``predictor``'s head; ``columns`` are ``prepare_pairs``'
    column arguments. Never raises for a failed run: the result holds the rows finished in input order up
    to the first missing partition and ``failure`` says why (the page shows it and offers to resume); a
    fault of this program also logs its traceback."""
    from core.scoring.distributed import RayOptions, RayRunFailed, RayUnavailable, read_scored, score_on_ray

    address = cluster_address()
    tensors, card = predictor.heads.tensors(), predictor.card
    key = hashlib.sha256(csv_bytes)
    key.update(json.dumps([columns, str(images_root)], sort_keys=True).encode())
    for name in sorted(tensors):
        key.update(tensors[name].numpy().tobytes())
    folder = Path(work_dir) / key.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / "table.csv"
    if not table_path.exists():
        table_path.write_bytes(csv_bytes)
    out = folder / "scored"
    options = RayOptions(address=None if address == "local" else address,
                         workers=config.ray_workers())
    pace = _Pace(on_progress)
    failure, total = None, None
    try:
        run = score_on_ray(table_path, out, tensors=tensors, card=card, images_root=images_root, options=options,
                           on_progress=pace, **columns)
        total = run.total_rows
    except (*expected_failures(), RayUnavailable, RayRunFailed) as exc:  # the message says it all
        failure = f"on the cluster: {exc}"
    except Exception as exc:  # a fault of this program: its traceback goes to the log; what was written stays
        log.exception("the cluster run in %s stopped on an internal error; its finished partitions are kept", out)
        failure = f"on the cluster, an internal error ({type(exc).__name__}: {exc}); its details are in the server's log"
    frame = read_scored(out) if (out / "_manifest.json").exists() else empty_result()
    frame = frame[result_columns()] if len(frame) else empty_result()
    if total is None:
        total = _total_rows(out, csv_bytes)
    prefix = _finished_prefix(frame)
    return BatchResult(frame.iloc[:prefix].reset_index(drop=True), prefix, total, failure)


class _Pace:
    """Turns the cluster's progress into the local engine's Progress (the page's bar and time left)."""

    def __init__(self, on_progress):
        self.on_progress = on_progress
        self.last: tuple[int, float] | None = None

    def __call__(self, progress) -> None:
        now = time.perf_counter()
        recent = None
        if self.last is not None and progress.done_rows > self.last[0]:
            recent = (progress.done_rows - self.last[0]) / max(now - self.last[1], 1e-9)
        self.last = (progress.done_rows, now)
        if self.on_progress:
            self.on_progress(Progress(progress.done_rows, progress.total_rows, progress.elapsed_s, progress.errors,
                                      recent))


def _finished_prefix(frame) -> int:
    """How many rows from the top are finished with no gap (partitions finish in any order)."""
    rows = frame["row"].to_numpy() if len(frame) else []
    n = 0
    while n < len(rows) and rows[n] == n:
        n += 1
    return n


def _total_rows(out: Path, csv_bytes: bytes) -> int:
    """Rows of the table: from the run's manifest, else read again (a run that failed before writing one)."""
    from core.io.tables import read_table

    manifest = out / "_manifest.json"
    if manifest.exists():
        return int(json.loads(manifest.read_text())["input"]["rows"])
    return len(read_table(csv_bytes))
