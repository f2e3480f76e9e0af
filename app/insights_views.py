"""Tables of the analysis page's Drivers, Themes and Compare versions views, as people read them
(no Streamlit here): engine results from ``core.insights`` in, DataFrames out. User text (terms, example
posts, theme terms) stays in table cells, which show it as written."""
from __future__ import annotations

import pandas as pd

from core.insights.themes import NO_THEME, NO_THEME_NAME
from core.io.labels import LABELS

INSIGHTS = {"drivers": "Drivers", "themes": "Themes", "compare": "Compare versions"}
CHANGED_SHOWN = 500  # changed posts listed on the page (all of them are in the download)


def driver_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One driver table (``core.insights.run_drivers``) for the page: term, kind, score, posts holding it
    here and their share, the same share among the other posts, and the first example post."""
    return pd.DataFrame({
        "term": table["term"].astype(str).to_numpy(), "kind": table["kind"].to_numpy(),
        "score (z)": table["score"].astype(float).round(1).to_numpy(), "posts": table["n"].astype(int).to_numpy(),
        "share %": (table["share"].astype(float) * 100).round(1).to_numpy(),
        "others %": (table["share_rest"].astype(float) * 100).round(1).to_numpy(),
        "example post": [texts[0] if texts else "" for texts in table["example_texts"]]})


def drivers_frame(drivers) -> pd.DataFrame:
    """Every table of a drivers result in one frame, the group first, every example post kept."""
    frames = [driver_rows(table).drop(columns="example post").assign(
        **{"example posts": [" | ".join(texts) for texts in table["example_texts"]]}).assign(group=group)
        for group, table in drivers.tables.items() if len(table)]
    if not frames:
        return pd.DataFrame(columns=["group", "term"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[["group", *[c for c in frame.columns if c != "group"]]]


def theme_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The theme table of ``core.insights.run_themes.theme_view`` for the page: theme, its top terms,
    posts, share with its 95 % interval, each class's share, net sentiment with its interval (points)."""
    def points(column: str) -> list:
        return (table[column].astype(float) * 100).round(1).tolist()

    rows = {"theme": [NO_THEME_NAME if t == NO_THEME else int(t) for t in table["id"]],
            "top terms": [", ".join(terms[:8]) for terms in table["terms"]],
            "posts": table["n"].astype(int).tolist(), "share %": points("share"),
            "share low %": points("share_lo"), "share high %": points("share_hi")}
    for c in LABELS:
        rows[f"{c} %"] = points(f"share_{c}")
    rows.update({"net": points("net"), "net low": points("net_lo"), "net high": points("net_hi")})
    return pd.DataFrame(rows)


def theme_names(table: pd.DataFrame) -> dict[int, str]:
    """Theme id → how charts name it: "3 · rain · flood · storm", or "no theme"."""
    return {int(t): (NO_THEME_NAME if t == NO_THEME else f"{int(t)} · {name}") for t, name in zip(table["id"], table["name"])}


def matrix_frame(matrix: list[list[int]]) -> pd.DataFrame:
    """The version-against-version matrix: rows A's class, columns B's, in label order."""
    return pd.DataFrame(matrix, index=[f"A: {c}" for c in LABELS], columns=[f"B: {c}" for c in LABELS])


def changes(changed: pd.DataFrame) -> list[str]:
    """The kinds of change among the changed posts ("negative → positive"), most frequent first."""
    if changed.empty:
        return []
    counts = (changed["A"].astype(str) + " → " + changed["B"].astype(str)).value_counts()
    return list(counts.index)


def changed_rows(changed: pd.DataFrame, change: str | None = None) -> pd.DataFrame:
    """The changed posts (``core.insights.run_compare``) of one kind of change (None: all), for the page."""
    if change is not None:
        changed = changed[(changed["A"].astype(str) + " → " + changed["B"].astype(str)) == change]
    return changed.rename(columns={"A": "version A", "B": "version B"}).reset_index(drop=True)


def version_choices(cards: list[dict], run_version: str | None, active: str | None) -> list[str]:
    """Versions that can be compared (damaged ones left out), the run's own and the active one first."""
    ids = [c["version"] for c in cards if not c.get("damaged")]
    first = [v for v in (run_version, active) if v in ids]
    return list(dict.fromkeys([*first, *ids]))


def version_label(version: str, run_version: str | None, active: str | None) -> str:
    """A version as the selectors show it (the ids are the registry's: letters, digits and dashes)."""
    marks = [m for m, hit in (("scored this run", version == run_version), ("active", version == active)) if hit]
    return version + (f" ({', '.join(marks)})" if marks else "")
