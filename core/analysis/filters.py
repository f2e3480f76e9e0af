"""One set of filters over a run's scored posts, shared by the analysis page, its deep links and the
command line, and compiled to one parameterised SQL WHERE clause.

``Filters`` round-trips through ``to_dict`` / ``from_dict`` (JSON, the page's state) and through
``to_query_params`` / ``from_query_params`` (a URL's query string)::

    class=negative&class=neutral      predicted class (any of)
    conf=0.6,1                        confidence from 60 % to 100 % (inclusive)
    conflict=only | none              only modality conflicts / none of them
    labels=labelled | unlabelled | wrong | right
    f:brand=Acme&f:brand=             values of any column ("" = blank cells)
    date=created&from=2024-01-01&to=2024-03-31   a date range (inclusive) on a column read as dates
    q=#flood "cold rain" -spam        text search (core.analysis.search)

Only posts the model scored are analysed (rows that failed have no class). Column names are checked
against the run's columns and quoted; every value travels as a parameter.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date

from core.analysis.search import SearchError, parse_search
from core.analysis.sql import quote_identifier
from core.errors import InputError
from core.io.labels import LABELS

CONFLICT_STATES = ("only", "none")
LABEL_STATES = ("labelled", "unlabelled", "wrong", "right")
VALUE_PREFIX = "f:"
BLANK = None  # how a blank cell is named in a value filter (JSON null; "" in a query string)
MAX_VALUES = 500


class FilterError(InputError):
    """A filter that cannot apply to this run (unknown column, malformed value); the message says which."""


@dataclass
class Filters:
    """What to keep; every field left at its default keeps everything."""
    classes: list[str] | None = None
    confidence: tuple[float, float] | None = None
    conflict: str | None = None
    labels: str | None = None
    values: dict[str, list[str | None]] = field(default_factory=dict)
    date_column: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    search: str = ""

    def __post_init__(self) -> None:
        if self.classes is not None:
            self.classes = list(self.classes)
            unknown = [c for c in self.classes if c not in LABELS]
            if unknown:
                raise FilterError(f"unknown class {unknown[0]!r}: choose from {', '.join(LABELS)}")
            if set(self.classes) == set(LABELS):
                self.classes = None
        if self.confidence is not None:
            low, high = (float(x) for x in self.confidence)
            if not (0 <= low <= high <= 1) or math.isnan(low) or math.isnan(high):
                raise FilterError(f"confidence range {low}–{high}: give two numbers from 0 to 1, the lower first")
            self.confidence = None if (low, high) == (0.0, 1.0) else (low, high)
        if self.conflict not in (None, *CONFLICT_STATES):
            raise FilterError(f"conflict={self.conflict!r}: use one of {', '.join(CONFLICT_STATES)}")
        if self.labels not in (None, *LABEL_STATES):
            raise FilterError(f"labels={self.labels!r}: use one of {', '.join(LABEL_STATES)}")
        cleaned = {}
        for column, kept in (self.values or {}).items():
            if not isinstance(kept, (list, tuple)) or not kept:
                continue
            if len(kept) > MAX_VALUES:
                raise FilterError(f"{len(kept)} values for column {column!r}: at most {MAX_VALUES}")
            cleaned[str(column)] = list(dict.fromkeys(None if v is None else str(v) for v in kept))
        self.values = cleaned
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value in ("", None):
                setattr(self, name, None)
                continue
            try:
                setattr(self, name, date.fromisoformat(str(value)[:10]).isoformat())
            except ValueError:
                raise FilterError(f"{name.replace('_', ' ')} {value!r}: give a date as YYYY-MM-DD") from None
        if (self.date_from or self.date_to) and not self.date_column:
            raise FilterError("a date range needs the column that holds the dates")
        self.search = (self.search or "").strip()
        try:
            parse_search(self.search)  # refuses an unusable search now, not when it runs
        except SearchError as error:
            raise FilterError(str(error)) from None

    # ----- dict and query-string forms ---------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (``from_dict`` reads it back)."""
        return {"classes": self.classes, "confidence": list(self.confidence) if self.confidence else None,
                "conflict": self.conflict, "labels": self.labels, "values": {k: list(v) for k, v in self.values.items()},
                "date_column": self.date_column, "date_from": self.date_from, "date_to": self.date_to,
                "search": self.search}

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Filters:
        """Filters from ``to_dict``'s form; missing keys keep their default, unknown keys are refused."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FilterError(f"unknown filter {unknown[0]!r}: known ones are {', '.join(sorted(known))}")
        if data.get("confidence") is not None:
            data["confidence"] = tuple(data["confidence"])
        return cls(**data)

    def to_query_params(self) -> dict[str, str | list[str]]:
        """The filters as URL query parameters (only those that filter something)."""
        params: dict[str, str | list[str]] = {}
        if self.classes is not None:
            params["class"] = list(self.classes)
        if self.confidence is not None:
            params["conf"] = f"{self.confidence[0]:g},{self.confidence[1]:g}"
        if self.conflict:
            params["conflict"] = self.conflict
        if self.labels:
            params["labels"] = self.labels
        for column, kept in self.values.items():
            params[VALUE_PREFIX + column] = ["" if v is None else v for v in kept]
        if self.date_column and (self.date_from or self.date_to):
            params["date"] = self.date_column
            if self.date_from:
                params["from"] = self.date_from
            if self.date_to:
                params["to"] = self.date_to
        if self.search:
            params["q"] = self.search
        return params

    @classmethod
    def from_query_params(cls, params: Mapping) -> Filters:
        """Filters from a query string's parameters (``{key: value or [values]}``); keys that are not
        filters (the page's own: run, by …) are left alone."""
        def every(key: str) -> list[str]:
            value = params.get(key)
            if value is None:
                return []
            return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]

        def one(key: str) -> str | None:
            values = every(key)
            return values[-1] if values else None

        confidence = None
        if one("conf"):
            try:
                low, high = (float(x) for x in one("conf").split(","))
            except ValueError:
                raise FilterError(f"conf={one('conf')!r}: give two numbers such as 0.6,1") from None
            confidence = (low, high)
        values = {key[len(VALUE_PREFIX):]: [v if v != "" else BLANK for v in every(key)]
                  for key in params if str(key).startswith(VALUE_PREFIX)}
        return cls(classes=every("class") or None, confidence=confidence, conflict=one("conflict") or None,
                   labels=one("labels") or None, values=values, date_column=one("date") or None,
                   date_from=one("from"), date_to=one("to"), search=one("q") or "")

    # ----- small edits the page makes ----------------------------------------------------------------
    def with_value(self, column: str, value: str | None) -> Filters:
        """A copy that keeps only ``value`` of ``column`` (a click on a group)."""
        return replace(self, values={**self.values, column: [value]})

    @property
    def is_empty(self) -> bool:
        return self == Filters()

    def describe(self) -> list[str]:
        """One plain line per active filter, for captions, reports and the CLI."""
        lines = []
        if self.classes is not None:
            lines.append("predicted class: " + ", ".join(self.classes))
        if self.confidence is not None:
            lines.append(f"confidence {self.confidence[0]:.0%} – {self.confidence[1]:.0%}")
        if self.conflict:
            lines.append("only modality conflicts" if self.conflict == "only" else "no modality conflicts")
        if self.labels:
            lines.append({"labelled": "labelled posts", "unlabelled": "unlabelled posts",
                          "wrong": "wrongly predicted posts", "right": "rightly predicted posts"}[self.labels])
        for column, kept in self.values.items():
            lines.append(f"{column}: " + ", ".join("(blank)" if v is None else v for v in kept))
        if self.date_column and (self.date_from or self.date_to):
            lines.append(f"{self.date_column} from {self.date_from or 'the start'} to {self.date_to or 'the end'}")
        if self.search:
            lines.append(f"text search: {self.search}")
        return lines


@dataclass(frozen=True)
class Where:
    """A compiled WHERE clause (without the keyword) and its parameters, in order."""
    sql: str
    params: list


def value_expression(column: str) -> str:
    """SQL: a column's cell as trimmed text, NULL where blank: how groups and value filters see a cell."""
    return f"NULLIF(trim(CAST({quote_identifier(column)} AS VARCHAR)), '')"


def compile_filters(filters: Filters, schema) -> Where:
    """``filters`` as one WHERE clause over the run's ``rows``. ``schema`` is the query object
    (``core.analysis.engine.RunQuery``): its ``columns``, ``text_column``, ``label_column`` and
    ``date_reading(column)``."""
    parts, params = ["prediction IS NOT NULL"], []
    if filters.classes is not None:
        parts.append("prediction IN (" + ", ".join("?" for _ in filters.classes) + ")" if filters.classes else "FALSE")
        params += filters.classes
    if filters.confidence is not None:
        parts.append("confidence BETWEEN ? AND ?")
        params += list(filters.confidence)
    if filters.conflict:
        parts.append("coalesce(conflict, FALSE) = ?")
        params.append(filters.conflict == "only")
    if filters.labels:
        label = schema.label_column
        if label is None:
            raise FilterError("this run has no label column: the labelled / wrong filters need one")
        value = value_expression(label)
        parts.append({"labelled": f"{value} IS NOT NULL", "unlabelled": f"{value} IS NULL",
                      "wrong": f"{value} IS NOT NULL AND {value} <> prediction",
                      "right": f"{value} = prediction"}[filters.labels])
    for column, kept in filters.values.items():
        _require_column(schema, column)
        real = [v for v in kept if v is not None]
        options = []
        if real:
            options.append(f"{value_expression(column)} IN (" + ", ".join("?" for _ in real) + ")")
            params += real
        if len(real) < len(kept):
            options.append(f"{value_expression(column)} IS NULL")
        parts.append("(" + " OR ".join(options) + ")")
    if filters.date_column and (filters.date_from or filters.date_to):
        _require_column(schema, filters.date_column)
        moment = schema.date_reading(filters.date_column).expression
        if filters.date_from:
            parts.append(f"{moment} >= CAST(? AS TIMESTAMP)")
            params.append(filters.date_from)
        if filters.date_to:
            parts.append(f"{moment} < CAST(? AS TIMESTAMP) + INTERVAL 1 DAY")
            params.append(filters.date_to)
    search = search_condition(filters.search, schema)
    if search is not None:
        parts.append(search.sql)
        params += search.params
    return Where(" AND ".join(parts), params)


def search_condition(text: str, schema) -> Where | None:
    """The text search alone as a condition (None without terms)."""
    terms = parse_search(text)
    return terms_condition(terms, schema) if terms else None


def terms_condition(terms: list, schema) -> Where:
    """SQL true where a post's text matches every one of ``terms`` (``core.analysis.search.Term``)."""
    if schema.text_column is None:
        raise FilterError("this run has no text column to search")
    cell = f"coalesce(CAST({quote_identifier(schema.text_column)} AS VARCHAR), '')"
    parts = [("NOT " if term.exclude else "") + f"regexp_matches({cell}, ?)" for term in terms]
    return Where(" AND ".join(parts), [term.pattern for term in terms])


def _require_column(schema, column: str) -> None:
    if column not in schema.columns:
        raise FilterError(f"this run has no column {column!r}")
