"""Score a pairs table on a Ray cluster, with the same rows, statuses and numbers as local scoring.

The table is cut into fixed partitions of ``partition_rows`` rows by position. Ray Data runs them
through two stages, its documented batch-inference pattern (``core.scoring.distributed_stages``): a task
stage checks each row with the local rules and reads every picture, so a bad file becomes that row's
``status = error``; an actor pool loads the encoders and the head once per actor and scores whole
partitions with the local engine's ``score_chunk``.

The driver (here) writes each returned partition atomically beside a manifest naming the input, the
head and the partition size (``core.scoring.distributed_files``). A run that dies keeps the partitions
it wrote; running it again with the same output folder sends Ray only the missing partitions, and
refuses an output folder that holds another table's or another head's run.

Results come back to the driver, so the output folder needs no shared filesystem; the pictures do:
every worker reads them at the same path (a shared mount or the same copy on each node), and each
stage refuses to start with a clear message where the images folder is not readable. Workers use no
SQLite feature store; the local store stays a laptop optimisation.

This module is the public API: the names of the two others that callers use are importable from here.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core.errors import InputError
from core.scoring.distributed_files import (  # noqa: F401 - the public API of distributed scoring
    FORMATS,
    MANIFEST,
    OutputMismatch,
    finished_partitions,
    open_output,
    partition_name,
    read_pairs_table,
    read_scored,
    write_atomically,
)
from core.scoring.distributed_stages import (  # noqa: F401 - the public API of distributed scoring
    LOCAL_CHUNK,
    SHARED_IMAGES_HINT,
    PartitionScorer,
    check_images_root,
    check_partition,
    image_draft_size,
    serialise_head,
)
from core.scoring.stream import file_sha256

if TYPE_CHECKING:
    from core.registry import HeadCard

# A multiple of the local chunk (64), so chunks and image batches match local scoring; small enough that no
# actor waits long for another at the end of a run (for millions of rows, a bigger size means fewer files).
PARTITION_ROWS = 256
INSTALL_HINT = "the Ray engine needs Ray Data: pip install -r requirements-ray.txt"


class RayUnavailable(RuntimeError):
    """Ray Data is not installed here; the message says how to install it."""


class RayRunFailed(RuntimeError):
    """A distributed run stopped on an error in a worker; the partitions written before it are kept."""


@dataclass
class RayOptions:
    """Where and how wide to run: a cluster ``address`` (None starts a local Ray), the actor count, the CPUs
    (= torch / ONNX Runtime threads) and GPUs each actor holds, rows per partition, the output format."""
    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    partition_rows: int = PARTITION_ROWS
    format: str = "parquet"


@dataclass
class RayProgress:
    """How far a distributed run is, in rows and partitions (those done before this run included)."""
    done_rows: int
    total_rows: int
    done_partitions: int
    total_partitions: int
    errors: int
    elapsed_s: float


@dataclass
class RayRunResult:
    """What one call of ``score_on_ray`` did: partitions found finished, partitions it scored, rows, bad rows."""
    out_dir: Path
    total_rows: int
    total_partitions: int
    skipped: list[int] = field(default_factory=list)   # finished before this run: not scored again
    scored: list[int] = field(default_factory=list)    # scored and written by this run
    errors: int = 0                                    # bad rows in the partitions this run scored
    seconds: float = 0.0
    startup_s: float = 0.0                             # until Ray was up (0 when it already was)
    first_partition_s: float | None = None             # until the first partition came back (actors loaded)
    scored_rows: int = 0                               # rows in the partitions this run scored


# ----- Ray --------------------------------------------------------------------------------------------

def require_ray():
    """The ``ray`` module with Ray Data, or RayUnavailable saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> float:
    """Join the cluster at ``address`` (or start a local Ray when None) unless this process already has;
    returns the seconds it took."""
    ray = require_ray()
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                 # Local Ray: workers import the project from where the driver runs.
                 runtime_env=None if address else {"env_vars": {"PYTHONPATH": _project_root()}})
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the caller reports progress
    context.print_on_execution_start = False
    return time.perf_counter() - started


def _project_root() -> str:
    root = str(Path(__file__).resolve().parents[2])
    existing = os.environ.get("PYTHONPATH")
    return root if not existing else f"{root}{os.pathsep}{existing}"



# ----- the run ---------------------------------------------------------------------------------------

def head_version(head: str | Path | None = None) -> tuple[dict, HeadCard]:
    """(tensors, card) of a head: a version folder, a version id of the user's registry, or the active one
    (what ``load_default_predictor`` serves), without loading any encoder here."""
    from core.registry import open_registry, read_version_folder

    if head and Path(head).is_dir():
        return read_version_folder(Path(head))
    registry = open_registry()
    return registry.load(head or registry.active_version())


def score_on_ray(table_path: str | Path, out_dir: str | Path, *, tensors: dict, card: HeadCard | dict,
                 images_root: str | Path | None, text_column: str | None = "text",
                 image_column: str | None = "image", label_column: str | None = None,
                 id_column: str | None = None, options: RayOptions | None = None, table: pd.DataFrame | None = None,
                 on_progress: Callable[[RayProgress], None] | None = None) -> RayRunResult:
    """Score the pairs table at ``table_path`` on Ray into partition files under ``out_dir``, skipping the
    partitions a previous run of the same table and head finished; ``read_scored(out_dir)`` gives the table.

    ``table`` is the table already read from ``table_path`` (``read_pairs_table``), to save a second read.
    ``tensors`` and ``card`` are the head version (``core.registry``); every actor builds the encoders
    the card names. Raises TableError for a table that cannot be used (before Ray starts), OutputMismatch
    for an output folder of another run, RayUnavailable without Ray, OSError when the images folder is not
    readable here or on a worker; an exception in a worker stops the run with what was written kept.
    """
    from core.io.tables import prepare_pairs, row_ids
    from core.registry import HeadCard

    card = HeadCard.coerce(card)
    options = options or RayOptions()
    if options.format not in FORMATS:
        raise InputError(f"output format {options.format!r}: choose one of {', '.join(FORMATS)}")
    if options.partition_rows < 1 or options.workers < 1:
        raise InputError("partition rows and workers must be at least 1")
    require_ray()
    started = time.perf_counter()
    table_path, out_dir = Path(table_path), Path(out_dir)
    root = None if images_root is None else str(Path(images_root).resolve())
    check_images_root(root)
    table = read_pairs_table(table_path) if table is None else table
    columns = {"text_column": text_column, "image_column": image_column, "label_column": label_column,
               "id_column": id_column}
    prepare_pairs(table.head(0), **columns)  # the whole-table checks (missing columns) before any work
    head = serialise_head(tensors)
    size = options.partition_rows
    n_parts = -(-len(table) // size)
    manifest = {"input": {"name": table_path.name, "sha256": file_sha256(table_path), "rows": len(table)},
                "columns": {**columns, "images_root": root},
                "head": {"version": card.version, "sha256": hashlib.sha256(head).hexdigest()},
                "partition_rows": size, "partitions": n_parts, "format": options.format}
    open_output(out_dir, manifest)
    result = RayRunResult(out_dir, len(table), n_parts)
    result.skipped = finished_partitions(out_dir, n_parts, options.format)
    todo = [k for k in range(n_parts) if k not in set(result.skipped)]
    done_rows = sum(min(size, len(table) - k * size) for k in result.skipped)
    if not todo:
        result.seconds = time.perf_counter() - started
        return result

    result.startup_s = connect(options.address)
    import ray.data

    ids = row_ids(table, id_column)
    duplicated = {key: n for key, n in Counter(ids).items() if n > 1}
    items = [{"part": k, "first": k * size,
              "records": table.iloc[k * size:(k + 1) * size].to_json(orient="split", index=False)} for k in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    dataset = dataset.map_batches(
        check_partition, batch_size=1, num_cpus=0,  # light I/O work beside the actors' cores
        compute=ray.data.TaskPoolStrategy(size=max(1, options.workers)),
        fn_kwargs={"columns": columns, "images_root": root, "id_counts": duplicated,
                   "draft_size": image_draft_size(card)})
    dataset = dataset.map_batches(
        PartitionScorer, batch_size=1, num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
        # One partition at a time per actor: a partition never waits behind a busy actor while another is idle.
        compute=ray.data.ActorPoolStrategy(size=options.workers, max_tasks_in_flight_per_actor=1),
        fn_constructor_kwargs={"head_bytes": head, "card": card, "threads": max(1, round(options.cpus_per_worker)),
                               "images_root": root, "fmt": options.format})
    finished = iter(dataset.iter_rows())
    try:
        _collect(finished, result, out_dir, options.format, done_rows, len(table), on_progress, started)
    finally:
        # Stops Ray's executor at once when the caller stops (an exception in ``on_progress``, Ctrl-C):
        # what it had in flight is dropped, never half-written.
        getattr(finished, "close", lambda: None)()
    result.seconds = time.perf_counter() - started
    return result


def _collect(finished, result: RayRunResult, out_dir: Path, fmt: str, done_rows: int, total_rows: int,
             on_progress, started: float) -> None:
    """Write each partition the actors return, as it comes, and report progress."""
    n_parts = result.total_partitions
    while True:
        try:
            done = next(finished, None)
        except Exception as exc:  # a worker's error, re-raised with what was kept
            kept = len(result.skipped) + len(result.scored)
            raise RayRunFailed(f"{_root_message(exc)}; {kept} of {n_parts} partitions are finished in {out_dir}: "
                               "run again with the same output to score the rest") from exc
        if done is None:
            break
        k = int(done["part"])
        if result.first_partition_s is None:
            result.first_partition_s = time.perf_counter() - started
        write_atomically(out_dir / partition_name(k, fmt), bytes(done["data"]))
        result.scored.append(k)
        result.errors += int(done["errors"])
        done_rows += int(done["rows"])
        result.scored_rows += int(done["rows"])
        if on_progress:
            on_progress(RayProgress(done_rows, total_rows, len(result.skipped) + len(result.scored), n_parts,
                                    result.errors, time.perf_counter() - started))


def _root_message(exc: BaseException) -> str:
    """The last line of a worker's error ("OSError: the images folder …"), without Ray's traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
