"""``score --engine ray``: the same scoring on a Ray cluster (docs/scaling.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli.common import ProgressBar, RowProgress, image_column
from core.errors import InputError


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``score``'s engine choice and the Ray engine's settings (docs/scaling.md)."""
    from core.scoring.distributed import PARTITION_ROWS

    ray = parser.add_argument_group("distributed scoring (pip install -r requirements-ray.txt)")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process (default); ray: a Ray cluster, every worker reading the images at "
                          "the same path")
    ray.add_argument("--address", default=None,
                     help="Ray cluster address: auto or HEAD_IP:6379 (default: RAY_ADDRESS, else a local Ray)")
    ray.add_argument("--workers", type=int, default=1, help="scoring actors, each loading the model once")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (and threads) each actor holds")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each actor holds")
    ray.add_argument("--partition-rows", type=int, default=PARTITION_ROWS,
                     help="rows per partition file, the unit a rerun skips when it is finished")
    ray.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="partition file format")


def score_on_ray_command(args) -> int:
    """``score --engine ray``: the table scored on Ray into partition files under ``--out`` (a folder); a rerun
    with the same ``--out`` scores only the partitions still missing."""
    from core.scoring.distributed import (
        SHARED_IMAGES_HINT,
        RayOptions,
        RayRunFailed,
        RayUnavailable,
        head_version,
        read_pairs_table,
        score_on_ray,
    )

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: with --engine ray, --out is a folder of partition files; {out} is a file")
    tensors, card = head_version(args.head)
    options = RayOptions(address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker, partition_rows=args.partition_rows, format=args.format)
    images = Path(args.images) if args.images else Path(args.csv).resolve().parent
    print(f"Ray engine: {SHARED_IMAGES_HINT}; images from {images}", file=sys.stderr)
    progress = ProgressBar()
    try:
        table = read_pairs_table(args.csv)
        result = score_on_ray(args.csv, out, table=table, tensors=tensors, card=card, images_root=images,
                              text_column=args.text_column, image_column=image_column(args, table),
                              label_column=args.label_column if args.label_column in table.columns else None,
                              id_column=args.id_column or ("id" if "id" in table.columns else None),
                              options=options,
                              on_progress=lambda p: progress(RowProgress(p.done_rows, p.total_rows, p.errors)))
    except RayUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RayRunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopped; the finished partitions are kept in {out}: run the same command again to score the rest",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    rate = result.scored_rows / max(result.seconds, 1e-9)
    print(f"scored {result.scored_rows}/{result.total_rows} rows on Ray in {result.seconds:.1f}s ({rate:.1f} rows/s, "
          f"{result.startup_s:.1f}s to start Ray, first partition after {result.first_partition_s or 0:.1f}s), "
          f"{result.errors} row errors → {out}/ "
          f"({result.total_partitions} partitions, {len(result.skipped)} finished before and skipped)")
    if not args.no_run:
        from core.cli.runs import save_ray_run

        save_ray_run(out)
    return 0
