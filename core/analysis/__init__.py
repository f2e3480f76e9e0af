"""The analysis engine over a saved run's scored posts (``core.runs``): one set of filters, compiled to
SQL and run by DuckDB over the run's Parquet file, drives every view.

    from core.analysis import Filters, RunQuery, breakdown, over_time, gallery
    with RunQuery.for_run(run) as q:
        by_brand = breakdown(q, Filters(search="#flood"), "brand")
        weekly = over_time(q, Filters(), "date", "W")

Methods (intervals, the test for unusual periods) are in ``core.analysis.stats`` and docs/analysis.md.
"""
from core.analysis.breakdown import OTHER, Breakdown, breakdown
from core.analysis.engine import RunQuery, Summary
from core.analysis.filters import FilterError, Filters
from core.analysis.gallery import ORDERS, GalleryPage, gallery
from core.analysis.search import SearchError, Term, parse_search
from core.analysis.timeline import Timeline, over_time

__all__ = ["OTHER", "ORDERS", "Breakdown", "FilterError", "Filters", "GalleryPage", "RunQuery", "SearchError",
           "Summary", "Term", "Timeline", "breakdown", "gallery", "over_time", "parse_search"]
