"""``analyse RUN``: the analysis page's views of a saved run from a shell, with the same filters and engine.

    python -m core.cli analyse RUN --by brand --over date --freq W --search "#flood" --json out.json
    python -m core.cli analyse RUN --drivers --themes --json out.json

The JSON holds ``rows`` (posts after the filters), ``by`` (``{column, groups: [{value, n, share, net,
net_ci}]}``), ``over`` (``{column, freq, unparsed, periods: [{start, n, share, unusual}]}``), ``drivers``
(``{negative: [{term, score, n}], neutral: […], positive: […]}``) and ``themes`` (``[{id, terms, n,
share}]``, "no theme" as id -1); a view not asked for is null. ``--filters`` takes the page's query
string (its address after ``?``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import parse_qs

from core.errors import InputError


def filters_from_args(args):
    """The ``Filters`` of the command line: ``--filters`` (a page's query string), then ``--search``,
    ``--class`` and ``--where COL=VALUE`` on top."""
    from core.analysis import Filters

    params: dict[str, list[str]] = parse_qs(args.filters or "", keep_blank_values=True)
    if args.search is not None:
        params["q"] = [args.search]
    if args.cls:
        params["class"] = list(args.cls)
    for condition in args.where or []:
        column, sep, value = condition.partition("=")
        if not sep or not column:
            raise InputError(f"--where {condition!r}: write COLUMN=VALUE (an empty VALUE keeps blank cells)")
        params.setdefault(f"f:{column}", []).append(value)
    return Filters.from_query_params(params)


def cmd_analyse(args) -> int:
    """``analyse``: posts after the filters, a breakdown (``--by``), a timeline (``--over``), the drivers
    (``--drivers``), the themes (``--themes``); printed, and written as JSON with ``--json``."""
    from core.analysis import RunQuery, breakdown, over_time
    from core.cli.runs import find_run

    if args.freq and not args.over:
        raise InputError("--freq goes with --over COLUMN (the column of dates)")
    run = find_run(args.run_id)
    filters = filters_from_args(args)
    report = {"rows": None, "by": None, "over": None, "drivers": None, "themes": None}
    with RunQuery.for_run(run) as query:
        report["rows"] = query.count(filters)
        print(f"run {run.id} ({run.name}): {report['rows']:,} of {run.record.scored:,} scored posts"
              + (f" after {'; '.join(filters.describe())}" if not filters.is_empty else ""))
        if filters.search:
            counts = query.search_counts(filters)
            print("search matches (posts): " + " · ".join(f"{t}: {n:,}" for t, n in counts.items()))
        if args.by:
            result = breakdown(query, filters, args.by, top=args.top, sort=args.sort)
            report["by"] = result.to_dict()
            print(f"\nby {args.by} (shares in %, net in points, 95 % intervals):")
            print(result.table().to_string(index=False))
        if args.over:
            timeline = over_time(query, filters, args.over, args.freq or "W")
            report["over"] = timeline.to_dict()
            print(f"\nover time ({args.over}, per {timeline.freq}); * = unusual (chi-square, Holm-corrected):")
            table = timeline.table()
            table.insert(0, "", ["*" if u else "" for u in table["unusual"]])
            print(table.drop(columns=["unusual"]).to_string(index=False))
            if timeline.unparsed:
                print(f"{timeline.unparsed:,} posts have no readable date ({timeline.blank:,} blank, "
                      f"{timeline.unreadable:,} unreadable"
                      + (f", e.g. {', '.join(repr(v) for v in timeline.examples)}" if timeline.examples else "")
                      + "): left out of this view", file=sys.stderr)
        if args.drivers:
            report["drivers"] = _drivers(query, filters, args)
        if args.themes:
            report["themes"] = _themes(run, query, filters, args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _drivers(query, filters, args) -> dict:
    """Print and return the drivers of each class (``--drivers``)."""
    from core.insights.run_drivers import GROUPINGS, class_drivers

    drivers = class_drivers(query, filters, of=args.drivers_of, top=args.terms)
    print(f"\ndrivers per {GROUPINGS[args.drivers_of]} (weighted log-odds z-score; posts holding the term):")
    for group, table in drivers.tables.items():
        terms = ", ".join(f"{r.term} ({r.score:.1f}; {r.n:,})" for r in table.itertuples()) or "(no term stands out)"
        print(f"  {group} ({drivers.sizes[group]:,} posts): {terms}")
    return drivers.to_json()


def _themes(run, query, filters, args) -> list[dict]:
    """Print and return the themes among the filtered posts (``--themes``), found once per run and kept."""
    from core import config
    from core.features.store import FeatureStore
    from core.insights.run_themes import run_themes, theme_view, themes_folder

    themes = run_themes(run, FeatureStore(config.feature_store_path()), n_themes=args.themes_k,
                        refresh=args.refresh_themes)
    view = theme_view(query, filters, themes, themes_folder(run, args.themes_k))
    chosen = "chosen by silhouette" if args.themes_k is None else "as asked"
    print(f"\nthemes ({themes.k} {chosen}; found over the run's {len(themes.assignment):,} posts, "
          f"counted over the {view.n:,} filtered):")
    for r in view.table.itertuples():
        name = r.name if r.id < 0 else ", ".join(r.terms[:6]) or r.name
        print(f"  {r.id:>3}  {r.n:>8,}  {r.share * 100:5.1f} %  net {r.net * 100:+6.1f}  {name}")
    for note in themes.notes:
        print(f"note: {note}", file=sys.stderr)
    return view.to_json()


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The filters of the analysis page as flags (``filters_from_args`` reads them)."""
    from core.io.labels import LABELS

    parser.add_argument("--search", default=None, metavar="TERM",
                        help='words, "exact phrases", #hashtags, @mentions; -term excludes (as on the page)')
    parser.add_argument("--class", dest="cls", action="append", choices=LABELS, help="predicted class (repeat)")
    parser.add_argument("--where", action="append", metavar="COL=VALUE", help="keep posts with this value (repeat)")
    parser.add_argument("--filters", default=None, metavar="QUERY",
                        help="the page's filters as its query string, e.g. 'class=negative&f:brand=Acme'")


def register(sub) -> None:
    """Add ``analyse`` to the CLI's subparsers."""
    from core.analysis.breakdown import SORTS
    from core.insights.drivers import DEFAULT_TOP
    from core.insights.run_drivers import GROUPINGS

    analyse = sub.add_parser("analyse", help="a saved run's posts by a column, over time, their drivers and themes, "
                             "with the page's filters", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    analyse.add_argument("run_id", metavar="RUN", help="run id (`runs list`), or its name when only one run has it")
    analyse.add_argument("--by", default=None, metavar="COL", help="break down by this column")
    analyse.add_argument("--top", type=int, default=10, help="groups kept by --by; the rest pooled as (other)")
    analyse.add_argument("--sort", choices=SORTS, default="net", help="order of the groups (default: net sentiment)")
    analyse.add_argument("--over", default=None, metavar="COL", help="the column of dates for the timeline")
    analyse.add_argument("--freq", choices=["D", "W", "M"], type=str.upper, default=None, help="day, week (default) or month")
    analyse.add_argument("--drivers", action="store_true", help="the terms most associated with each class")
    analyse.add_argument("--drivers-of", choices=list(GROUPINGS), default="prediction",
                         help="the predicted class (default) or the labelled class")
    analyse.add_argument("--terms", type=int, default=DEFAULT_TOP, help=f"terms per class (default {DEFAULT_TOP})")
    analyse.add_argument("--themes", action="store_true",
                         help="what the posts talk about (found once per run from its stored text features, kept)")
    analyse.add_argument("--themes-k", type=int, default=None, metavar="N",
                         help="number of themes (default: chosen by silhouette)")
    analyse.add_argument("--refresh-themes", action="store_true", help="find the themes again instead of reusing them")
    add_filter_arguments(analyse)
    analyse.add_argument("--json", default=None, metavar="FILE", help="write {rows, by, over, drivers, themes} here")
    analyse.set_defaults(run=cmd_analyse)


