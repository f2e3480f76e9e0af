"""What a run records beside its rows (``run.json``): a name people can change, when and from what it
was scored, by which head and encoders, and which columns hold what."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

FORMAT = 1  # bumped when run.json or rows.parquet change shape


@dataclass
class ColumnRoles:
    """Which columns of the rows hold what: the model's ``text``, the ``image`` name, the picture's
    stored path (``image_path``, relative to the run's folder or absolute), the ``label`` and the
    ``id``; the input columns that read as ``dates`` and those worth grouping by (``groups``).
    None / [] where the run has none."""
    text: str | None = "text"
    image: str | None = "image"
    image_path: str | None = None
    label: str | None = None
    id: str | None = "id"
    dates: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> ColumnRoles:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass
class RunRecord:
    """A saved run's record. ``engine``: where it was scored (page, cli, ray); ``head``: the head version
    and its weights' hash; ``encoders``: the text and image encoders' spec and id; ``rows``: every
    input row, ``scored``: those with a prediction, ``errors``: bad rows; ``columns``: the rows'
    columns in order, for people (without the stored picture path); ``job``: what the batch page
    calls this scoring (None elsewhere)."""
    id: str
    name: str
    created: str
    source: str
    engine: str
    rows: int
    scored: int
    errors: int
    head: dict = field(default_factory=dict)
    encoders: dict = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    roles: ColumnRoles = field(default_factory=ColumnRoles)
    job: str | None = None     # the batch page's job key, so one scoring is saved once
    format: int = FORMAT

    def to_dict(self) -> dict:
        data = asdict(self)
        data["roles"] = self.roles.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["roles"] = ColumnRoles.from_dict(data.get("roles"))
        return cls(**values)

    @property
    def head_version(self) -> str | None:
        return self.head.get("version")
