"""Benchmark: the local engine against the Ray engine with 1 and 2 workers, side by side in one run.

    python bench/ray_scaling.py [--n 2000] [--workers 1 2] [--data DIR] [--json]

The same N pairs (default 2,000 from MVSA-Single train, never test.csv) are scored by the command a
user types, each in its own process and timed from launch to exit, start-up included (imports, model
loading, starting a local Ray, its actors loading the model):

- ``local``      ``python -m core.cli score`` (this process's engine, an empty feature store);
- ``ray-W``      ``python -m core.cli score --engine ray --workers W`` (a local Ray started by the command;
                 one CPU and one thread per worker; workers keep no feature store).

Every run gets a fresh ``MMSA_HOME`` holding only what a machine keeps after its first use (the exported
ONNX graphs and the int8 check, made once before the timing and printed), so no run reads features
another run stored; the pictures are read once before the timing, so every run finds them in the page
cache and the order of the runs does not matter. Printed: seconds, pairs/s and the ratio to the local
engine per run; Ray's start-up and the time to its first finished partition; the steady per-worker rate
(pairs after the first partition over the time they took); the largest probability difference between
each Ray output and the local one; the arithmetic for N nodes; the machine block (core.machine) and the
load average (other work on a shared machine slows every run). ``--json`` prints the figures as one JSON
line, last.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import config  # noqa: E402 - after the path is set
from core.machine import describe_machine, machine_block  # noqa: E402

RAY_LINE = re.compile(r"in ([\d.]+)s .*?([\d.]+)s to start Ray, first partition after ([\d.]+)s")


def make_table(data: Path, n: int, folder: Path) -> Path:
    """The first ``n`` MVSA train (then dev) pairs as a CSV whose image column is relative to ``data/images``."""
    import pandas as pd

    frame = pd.concat([pd.read_csv(data / f"{split}.csv", dtype=str, keep_default_na=False)
                       for split in ("train", "dev")], ignore_index=True).head(n)
    if len(frame) < n:
        raise SystemExit(f"only {len(frame)} pairs in {data}; ask for fewer with --n")
    path = folder / f"pairs-{n}.csv"
    frame.to_csv(path, index=False)
    return path


def warm_home(template: Path, table: Path, images: Path) -> float:
    """Export the ONNX graphs and run the int8 check once into ``template`` (what any machine keeps after
    its first run); returns the seconds it took (printed, not counted)."""
    import pandas as pd

    small = template / "warm.csv"
    pd.read_csv(table, dtype=str, keep_default_na=False).head(8).to_csv(small, index=False)
    started = time.perf_counter()
    run_cli(["score", "--csv", str(small), "--images", str(images), "--out", str(template / "warm-out.csv")],
            template)
    (template / "features.sqlite").unlink(missing_ok=True)
    for extra in template.glob("features.sqlite-*"):
        extra.unlink()
    return time.perf_counter() - started


def read_pictures_once(table: Path, images: Path) -> int:
    """Read every picture of the table once, so that each run finds them in the page cache (the first run
    timed would otherwise pay the disk for all); returns the bytes read."""
    import pandas as pd

    total = 0
    for name in pd.read_csv(table, dtype=str, keep_default_na=False)["image"]:
        path = images / name
        if name and path.is_file():
            total += len(path.read_bytes())
    return total


def fresh_home(template: Path, scratch: Path, name: str) -> Path:
    """A new MMSA_HOME with the template's graphs and int8 check, and no features."""
    home = scratch / f"home-{name}"
    shutil.copytree(template, home, ignore=shutil.ignore_patterns("features.sqlite*", "warm*", "heads"))
    return home


def run_cli(args: list[str], home: Path) -> tuple[float, str]:
    """Run ``python -m core.cli ARGS`` with ``MMSA_HOME=home``; (wall seconds from launch to exit, stdout)."""
    env = {**os.environ, "MMSA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"core.cli {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def max_probability_difference(local_csv: Path, ray_dir: Path) -> tuple[float, bool]:
    """(largest |p_local − p_ray| over every probability, whether rows, statuses and predictions match)."""
    import numpy as np

    from core.io.tables import read_table
    from core.scoring.batch import PROBABILITY_COLUMNS
    from core.scoring.distributed import read_scored

    local = read_table(local_csv)
    distributed = read_scored(ray_dir)
    probabilities = local[PROBABILITY_COLUMNS].replace("", np.nan).to_numpy(float)
    difference = float(np.nanmax(np.abs(probabilities - distributed[PROBABILITY_COLUMNS].to_numpy(float))))
    same = all(local[c].tolist() == distributed[c].fillna("").astype(str).tolist() for c in ("id", "status")) \
        and local["row"].astype(int).tolist() == distributed["row"].tolist() \
        and local["prediction"].tolist() == distributed["prediction"].fillna("").tolist()
    return difference, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="pairs scored by every engine")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray runs, one per worker count")
    parser.add_argument("--data", default=str(config.mvsa_dir()), help="MVSA-Single folder")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line, last")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "train.csv").exists():
        raise SystemExit(f"MVSA-Single not found in {data} (set --data or MMSA_MVSA_DIR)")
    images = data / "images"
    scratch = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    table = make_table(data, args.n, scratch)
    template = scratch / "home-template"
    template.mkdir()
    warm_s = warm_home(template, table, images)
    print(f"first use on this machine (ONNX graphs, int8 check; not counted): {warm_s:.1f}s", flush=True)

    print(f"pictures read once into the page cache: {read_pictures_once(table, images) / 2**20:.0f} MB", flush=True)
    common = ["score", "--csv", str(table), "--images", str(images)]
    runs = []
    local_out = scratch / "local.csv"
    seconds, _ = run_cli([*common, "--out", str(local_out)], fresh_home(template, scratch, "local"))
    runs.append({"engine": "local", "workers": None, "seconds": round(seconds, 1),
                 "pairs_per_s": round(args.n / seconds, 1)})
    print(f"local        {seconds:7.1f}s  {args.n / seconds:6.1f} pairs/s", flush=True)
    for workers in args.workers:
        out = scratch / f"ray-{workers}"
        seconds, stdout = run_cli([*common, "--out", str(out), "--engine", "ray", "--workers", str(workers)],
                                  fresh_home(template, scratch, f"ray-{workers}"))
        figures = RAY_LINE.search(stdout)
        inside, startup, first = (float(v) for v in figures.groups()) if figures else (seconds, 0.0, 0.0)
        partition_rows = json.loads((out / "_manifest.json").read_text())["partition_rows"]
        steady = (args.n - min(partition_rows, args.n)) / max(inside - first, 1e-9) if args.n > partition_rows \
            else None
        difference, same = max_probability_difference(local_out, out)
        runs.append({"engine": "ray", "workers": workers, "seconds": round(seconds, 1),
                     "pairs_per_s": round(args.n / seconds, 1), "ray_start_s": startup,
                     "first_partition_s": first, "steady_pairs_per_s": None if steady is None else round(steady, 1),
                     "max_probability_difference": difference, "same_rows": same})
        print(f"ray-{workers} worker{'s' if workers > 1 else ' '} {seconds:7.1f}s  {args.n / seconds:6.1f} pairs/s  "
              f"(Ray up after {startup:.1f}s, first partition after {first:.1f}s, then "
              f"{'—' if steady is None else f'{steady:.1f}'} pairs/s; max |Δp| vs local {difference:.1e}, "
              f"same rows and statuses: {same})", flush=True)
    local_rate = runs[0]["pairs_per_s"]
    for run in runs[1:]:
        run["ratio_to_local"] = round(run["pairs_per_s"] / local_rate, 2)
    print("\nratios to the local engine (wall clock, start-up included): "
          + ", ".join(f"ray-{r['workers']} {r['ratio_to_local']:.2f}×" for r in runs[1:]))
    widest = max(runs[1:], key=lambda r: r["workers"])
    if widest.get("steady_pairs_per_s"):
        rate, startup = widest["steady_pairs_per_s"], widest["first_partition_s"]
        million = ", ".join(f"{n} node{'s' if n > 1 else ''} ≈ {(startup + 1e6 / (n * rate)) / 60:.0f} min"
                            for n in (1, 4, 16))
        print(f"N nodes of this size ({widest['workers']} workers each): ≈ N × {rate:.1f} pairs/s after ≈ "
              f"{startup:.0f}s of start-up ({rate / widest['workers']:.1f} pairs/s a worker); 1,000,000 pairs: "
              f"{million}")
    block = machine_block()
    load = [round(x, 1) for x in os.getloadavg()]
    print(f"measured on: {describe_machine(block)}; load average at the end {load[0]} / {load[1]} / {load[2]} "
          "(1 / 5 / 15 min: other work on the machine slows every run)")
    shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps({"n": args.n, "runs": runs, "load_average": load, "machine": block}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
