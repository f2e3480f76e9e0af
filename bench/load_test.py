"""Load test: simultaneous browser users against one `streamlit run` of the app.

    python bench/load_test.py [--explore-users 8] [--pairs 500] [--explore-pairs 5] [--sweep 1,2,4,8]
                              [--correct-epochs 20] [--json out.json]

Starts its own Streamlit servers (each with a fresh MMSA_HOME, so no feature is cached from an earlier
phase; the shipped head ``assets/models/default``; the correction page's reference set is the project's
example pairs) and drives them with headless Chromium (``/usr/bin/chromium``, Playwright contexts on
this machine: the browser shares the CPU with the server):

- **explore** users: each analyses ``--explore-pairs`` distinct (text, image) pairs in a row on
  *Explore a pair* (type the text, upload the picture, press Analyse);
- one **batch** user: uploads a CSV of ``--pairs`` pairs, points at the images on the server, scores
  them and downloads the scored CSV;
- one **correction** run: uploads 8 labelled pairs on *Correct the model*, trains (at most
  ``--correct-epochs``) and saves a version (not activated, so every other user keeps the same model).

Pairs: MVSA-Single ``dev.csv`` then ``train.csv`` rows (``../shared/data/mvsa_single``, never
``test.csv``) when present, else pictures drawn here. An action's latency runs from the click to its
result in the page (the script run finished, the new result drawn, no stale result left).

Phases: **solo** (each user's actions alone, one after another, on a fresh server: the reference
results and latencies), **concurrent** (every user at once on a fresh server; every user's displayed
probabilities and the batch user's downloaded CSV must equal the solo ones) and, with ``--sweep``,
explore users alone at each count on a fresh server, to find how many keep the explore p95 under 2 s.
Prints per action n, p50, p95 and errors, the servers' peak memory (RSS of the server process and
its children), whether the results equal, and the machine block (``core.machine.machine_block``).

This file runs the phases; the pairs are in ``load_workload``, the server and its memory sampling in
``load_server``, the browser users in ``load_users``, the figures and the comparison in ``load_report``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load_users  # noqa: E402 - after the path is set
from bench.load_report import compare, fmt, load_average, print_table, summary  # noqa: E402
from bench.load_server import Server  # noqa: E402
from bench.load_users import Record, batch_user, correction_user, explore_user, open_page  # noqa: E402
from bench.load_workload import MVSA, Workload, drawn_workload, mvsa_workload, pairs_csv  # noqa: E402
from core.machine import machine_block  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
EXPLORE_TARGET_S = 2.0


# ----------------------------------------------------------------------------------------- the phases

async def _warm_up(browser, server: Server, workload: Workload) -> None:
    """Load the model, run one pair through both encoders and encode the reference set: one-off costs
    a user of a long-running server does not pay."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    record = Record()
    await explore_user(context, server.url, [workload.warmup], record, "warm-up")
    page = await open_page(context, f"{server.url}/correct", "Correct the model")
    await page.get_by_role("heading", name="3. Versions").wait_for()
    await context.close()
    if any(record.errors.values()):
        raise RuntimeError(f"warm-up failed: {record.errors}")


async def run_phase(name: str, workload: Workload, files: dict, explore_users: int, with_batch: bool,
                    with_correction: bool, concurrent: bool, epochs: int) -> dict:
    from playwright.async_api import async_playwright

    server = Server(workload, name)
    print(f"{name}: server starting ({server.home})", flush=True)
    try:
        server.wait_ready()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            await _warm_up(browser, server, workload)
            record = Record()
            users = []
            for u in range(explore_users):
                users.append(lambda ctx, u=u: explore_user(ctx, server.url, workload.explore[u], record, f"explore-{u}"))
            if with_batch:
                users.append(lambda ctx: batch_user(ctx, server.url, workload, files["batch_csv"], record))
            if with_correction:
                users.append(lambda ctx: correction_user(ctx, server.url, files["correction_csv"],
                                                         [q.image for q in workload.correction], epochs, record))

            async def one(user):
                context = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
                try:
                    await user(context)
                finally:
                    await context.close()

            print(f"{name}: {len(users)} users {'at once' if concurrent else 'one after another'}…", flush=True)
            started = time.perf_counter()
            if concurrent:
                await asyncio.gather(*(one(user) for user in users))
            else:
                for user in users:
                    await one(user)
            wall = time.perf_counter() - started
            await browser.close()
    finally:
        server.stop()
    return {"phase": name, "wall_s": wall, "peak_rss_mb": server.peak_rss / 2**20, "record": record,
            "explore_users": explore_users, "batch": with_batch, "correction": with_correction}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--explore-users", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=500, help="pairs the batch user scores")
    parser.add_argument("--explore-pairs", type=int, default=5, help="distinct pairs each explore user analyses")
    parser.add_argument("--correct-epochs", type=int, default=20, help="max epochs of the correction run")
    parser.add_argument("--sweep", default="", help="explore-user counts to try alone, e.g. 1,2,4,8")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one action may take before it is an error")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    load_users.ACTION_TIMEOUT_MS = int(args.timeout * 1000)
    from playwright.async_api import expect
    expect.set_options(timeout=load_users.ACTION_TIMEOUT_MS)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    sweep = sorted({int(n) for n in args.sweep.split(",") if n.strip()})
    users = max([args.explore_users, *sweep])
    scratch = Path(tempfile.mkdtemp(prefix="mmsa-load-pairs-"))
    if (MVSA / "dev.csv").is_file() and (MVSA / "train.csv").is_file():
        workload = mvsa_workload(args.pairs, users, args.explore_pairs)
    else:
        workload = drawn_workload(scratch, args.pairs, users, args.explore_pairs)
    files = {"batch_csv": pairs_csv(workload.batch, scratch / "batch.csv"),
             "correction_csv": pairs_csv(workload.correction, scratch / "correction.csv")}
    machine = machine_block()
    load_before = load_average()
    print(f"pairs: {workload.source}; load average before: {load_before}", flush=True)

    phase = {"workload": workload, "files": files, "epochs": args.correct_epochs}
    solo = asyncio.run(run_phase("solo", explore_users=args.explore_users, with_batch=True, with_correction=True,
                                 concurrent=False, **phase))
    print_table(f"alone, one user after another ({solo['wall_s']:.0f} s)", summary(solo))
    mixed = asyncio.run(run_phase("concurrent", explore_users=args.explore_users, with_batch=True,
                                  with_correction=True, concurrent=True, **phase))
    names = [f"explore-{u}" for u in range(args.explore_users)] + ["batch", "correction"]
    equality = compare(solo["record"], mixed["record"], names)
    print_table(f"at once: {args.explore_users} explore users + 1 batch user ({args.pairs} pairs) + 1 correction run "
                f"({mixed['wall_s']:.0f} s)", summary(mixed), summary(solo))
    print(f"server peak memory (RSS, process tree): alone {solo['peak_rss_mb']:,.0f} MB, "
          f"at once {mixed['peak_rss_mb']:,.0f} MB")
    print(f"results equal to the solo ones: {json.dumps(equality)}")
    errors = {a: e for a, e in {**solo['record'].errors, **mixed['record'].errors}.items() if e}
    for action, messages in errors.items():
        for message in messages:
            print(f"ERROR {action}: {message}")

    sweep_rows = []
    for n in sweep:
        result = asyncio.run(run_phase(f"sweep-{n}", explore_users=n, with_batch=False, with_correction=False,
                                       concurrent=True, **phase))
        row = next((r for r in summary(result) if r["action"].startswith("explore")), None)
        same = compare(solo["record"], result["record"], [f"explore-{u}" for u in range(min(n, args.explore_users))])
        sweep_rows.append({"explore_users": n, **(row or {}), "peak_rss_mb": result["peak_rss_mb"],
                           "explore_equal": same["explore_equal"], "explore_equal_as_shown": same["explore_equal_as_shown"]})
        print(f"sweep: {n} explore users at once: p50 {fmt(row and row['p50_s'])} s, p95 {fmt(row and row['p95_s'])} s, "
              f"errors {row and row['errors']}, peak RSS {result['peak_rss_mb']:,.0f} MB", flush=True)
    served = max((r["explore_users"] for r in sweep_rows if r.get("p95_s") is not None
                  and r["p95_s"] < EXPLORE_TARGET_S and r["errors"] == 0), default=None)
    if sweep_rows:
        print(f"explore users served at once with p95 < {EXPLORE_TARGET_S:.0f} s: {served}")
    load_after = load_average()
    print(f"load average after: {load_after} (the machine is shared: other work runs beside these figures)")
    print(f"measured on: {machine.get('cpu_model')} ({machine['cores']['usable']} usable CPUs; "
          f"avx2 {machine['flags']['avx2']}, avx512f {machine['flags']['avx512f']}, "
          f"avx512_vnni {machine['flags']['avx512_vnni']}), {machine['measured_at']}")

    if args.json:
        args.json.write_text(json.dumps({
            "solo": {"wall_s": solo["wall_s"], "peak_rss_mb": solo["peak_rss_mb"], "actions": summary(solo)},
            "concurrent": {"wall_s": mixed["wall_s"], "peak_rss_mb": mixed["peak_rss_mb"], "actions": summary(mixed),
                           "explore_users": args.explore_users, "batch_pairs": args.pairs},
            "equal_to_solo": equality, "sweep": sweep_rows, "explore_users_served_p95_under_2s": served,
            "errors": errors, "pairs": workload.source, "load_average": {"before": load_before, "after": load_after},
            "machine": machine}, indent=2))
    total_errors = sum(len(e) for e in errors.values())
    return 0 if total_errors == 0 and equality["explore_equal_as_shown"] and equality.get("batch_csv_identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
