"""``compare RUN --versions A B``: two head versions on a saved run's posts, scored again from the feature
store (only the heads run), with the analysis page's filters.

    python -m core.cli compare RUN --versions 20240301-101500-ab12 ./my-version --json out.json

A version is a version id of the registry (`versions list`) or a version folder. The JSON holds
``versions`` ({A, B}: what each names), ``n`` (posts both versions classified), ``agree`` (the share that
kept its class), ``changed`` (posts), ``matrix`` (rows: A's class, columns: B's, in the order negative,
neutral, positive), ``accuracy`` ({A, B}, null without labels), ``mcnemar_p`` (null without labels) and
``left_out`` (posts whose stored features were missing)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_compare(args) -> int:
    """``compare``: agreement, the matrix, changed posts and (with labels) accuracies and McNemar's p."""
    from core import config
    from core.analysis import RunQuery
    from core.cli.analyse import filters_from_args
    from core.cli.runs import find_run
    from core.features.store import FeatureStore
    from core.insights.run_compare import compare_on_run
    from core.io.labels import LABELS

    run = find_run(args.run_id)
    filters = filters_from_args(args)
    with RunQuery.for_run(run) as query:
        result = compare_on_run(query, filters, args.versions[0], args.versions[1],
                                FeatureStore(config.feature_store_path()))
    c = result.comparison
    print(f"run {run.id} ({run.name}): A = {c.names[0]}, B = {c.names[1]}"
          + (f"; filters: {'; '.join(filters.describe())}" if not filters.is_empty else ""))
    if c.n:
        print(f"{c.n:,} posts: {c.agree:,} keep their class ({c.agreement * 100:.1f} %), {c.changed:,} change")
    else:
        print("no post could be scored by both versions")
    width = max(len(label) for label in LABELS)
    corner = "A \\ B"
    print(f"\n{corner:<{width}}  " + "  ".join(f"{label:>{width}}" for label in LABELS))
    for label, row in zip(LABELS, c.matrix):
        print(f"{label:<{width}}  " + "  ".join(f"{k:>{width},}" for k in row))
    if c.accuracy is not None:
        for side in ("A", "B"):
            low, high = c.accuracy_ci[side]
            print(f"accuracy of {side} on {c.labelled:,} labelled posts: {c.accuracy[side] * 100:.1f} % "
                  f"(95 % interval {low * 100:.1f}–{high * 100:.1f})")
        print(f"McNemar ({c.test.method}): A right where B is wrong {c.test.b:,}, the reverse {c.test.c:,}, "
              f"p = {c.test.p:.4g}")
    for note in c.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    return 0


def register(sub) -> None:
    """Add ``compare`` to the CLI's subparsers."""
    from core.cli.analyse import add_filter_arguments

    compare = sub.add_parser("compare", help="two head versions on a saved run's posts, from the stored features",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("run_id", metavar="RUN", help="run id (`runs list`), or its name when only one run has it")
    compare.add_argument("--versions", nargs=2, required=True, metavar=("A", "B"),
                         help="two version ids (`versions list`) or version folders")
    add_filter_arguments(compare)
    compare.add_argument("--json", default=None, metavar="FILE", help="write the comparison here")
    compare.set_defaults(run=cmd_compare)
