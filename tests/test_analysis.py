"""The analysis engine answers an analyst's questions over a saved run with planted effects: which brand
is most negative (with an interval), which week stands out, how many posts mention a hashtag, how
many date cells could not be read; filters compile to parameterised SQL that user text cannot break."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.analysis import OTHER, FilterError, Filters, RunQuery, breakdown, gallery, over_time, parse_search
from core.analysis.stats import chi2_sf, holm, net_interval, unusual_periods, wilson_interval
from core.runs import save_run
from tests.planted import (
    ALL_NEGATIVE,
    BLANK_DATES,
    BRANDS,
    ERROR_ROWS,
    FLOOD_POSTS,
    FLOODING_POSTS,
    PLANTED_WEEK,
    UNREADABLE_DATES,
    WORD_FLOOD_POSTS,
    planted_frame,
)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMSA_HOME", str(tmp_path_factory.mktemp("home")))
        frame = planted_frame()
        run = save_run(frame, source="posts.csv", engine="cli",
                       image_paths=[f"/pictures/{i}.jpg" for i in range(len(frame))])
        with RunQuery.for_run(run) as query:
            yield {"run": run, "frame": frame, "query": query, "scored": frame[frame["status"] != "error"]}


def test_a_brand_whose_posts_are_all_negative_comes_out_lowest_with_an_interval(planted):
    result = breakdown(planted["query"], Filters(), "brand", top=20)
    groups = result.to_dict()["groups"]
    assert [g["value"] for g in groups][-1] == ALL_NEGATIVE      # sorted by net sentiment, lowest last
    lowest = groups[-1]
    scored = planted["scored"]
    assert lowest["n"] == int((scored["brand"] == ALL_NEGATIVE).sum())  # the error rows are not counted
    assert lowest["share"] == {"negative": 1.0, "neutral": 0.0, "positive": 0.0} and lowest["net"] == -1.0
    low, high = lowest["net_ci"]
    assert low == -1.0 and -1.0 < high < -0.9                    # a real interval, not a zero-width one
    others = [g for g in groups if g["value"] != ALL_NEGATIVE]
    assert all(g["net_ci"][0] > high for g in others)            # clearly below every other brand
    assert sum(g["n"] for g in groups) == len(scored)


def test_shares_and_net_match_a_count_by_hand_and_the_table_reads_in_percent(planted):
    scored = planted["scored"]
    result = breakdown(planted["query"], Filters(), "brand", top=20, sort="posts")
    acme = next(g for g in result.to_dict()["groups"] if g["value"] == "Acme")
    mine = scored[scored["brand"] == "Acme"]["prediction"].value_counts(normalize=True)
    assert acme["share"]["positive"] == pytest.approx(mine["positive"], abs=1e-6)
    assert acme["net"] == pytest.approx(mine["positive"] - mine["negative"], abs=1e-6)
    assert acme["net_ci"][0] < acme["net"] < acme["net_ci"][1]
    table = result.table()
    assert list(table["posts"]) == sorted(table["posts"], reverse=True)
    row = table[table["group"] == "Acme"].iloc[0]
    assert row["positive %"] == pytest.approx(round(mine["positive"] * 100, 1))
    assert row["positive low %"] < row["positive %"] < row["positive high %"]


def test_top_n_pools_the_rest_into_other_and_blank_cells_are_their_own_group(planted):
    result = breakdown(planted["query"], Filters(), "brand", top=5)
    groups = result.to_dict()["groups"]
    assert len(groups) == 6 and groups[-1]["value"] == OTHER
    assert result.groups.iloc[-1]["label"] == f"{OTHER} ({len(BRANDS) - 5} values)"
    assert sum(g["n"] for g in groups) == len(planted["scored"])
    by_campaign = breakdown(planted["query"], Filters(), "campaign").to_dict()["groups"]
    assert None in [g["value"] for g in by_campaign]            # "" cells: the blank group (JSON null)
    blank = next(g for g in by_campaign if g["value"] is None)
    assert blank["n"] == int((planted["scored"]["campaign"] == "").sum())


def test_a_planted_week_is_marked_and_no_other(planted):
    weekly = over_time(planted["query"], Filters(), "date", "W")
    marked = [p["start"] for p in weekly.to_dict()["periods"] if p["unusual"]]
    assert marked == [PLANTED_WEEK]
    row = weekly.periods[weekly.periods["unusual"]].iloc[0]
    assert "negative ↑" in row["direction"] and row["p_adjusted"] < 0.05
    # Holm's correction: the adjusted p-value is at least the raw one times the number of tests left.
    assert row["p_adjusted"] >= row["p"] * 1
    assert weekly.table()["unusual"].sum() == 1


def test_date_cells_that_do_not_parse_are_counted_and_shown_never_dropped(planted):
    weekly = over_time(planted["query"], Filters(), "date", "W")
    assert weekly.unreadable == len(UNREADABLE_DATES) and weekly.blank == BLANK_DATES
    assert weekly.to_dict()["unparsed"] == len(UNREADABLE_DATES) + BLANK_DATES
    assert sorted(weekly.examples) == sorted(UNREADABLE_DATES)
    assert weekly.n + weekly.unparsed == len(planted["scored"])   # every scored post is accounted for
    assert planted["query"].total_rows == len(planted["scored"]) + ERROR_ROWS
    monthly = over_time(planted["query"], Filters(), "date", "M").to_dict()
    assert [p["start"] for p in monthly["periods"]] == [f"2024-0{m}-01" for m in range(1, 7)]
    daily = over_time(planted["query"], Filters(), "date", "D")
    assert len(daily.periods) == 182 and daily.periods["start"].is_monotonic_increasing


def test_a_search_counts_exactly_posts_with_the_hashtag_the_word_or_both(planted):
    query = planted["query"]
    assert query.count(Filters(search="#flood")) == FLOOD_POSTS               # not #flooding, not the error rows
    assert query.count(Filters(search="#FLOOD")) == FLOOD_POSTS               # case-insensitive
    assert query.count(Filters(search="flood")) == FLOOD_POSTS + WORD_FLOOD_POSTS   # the word, bare or tagged
    assert query.count(Filters(search="flood*")) == FLOOD_POSTS + FLOODING_POSTS + WORD_FLOOD_POSTS
    assert query.count(Filters(search='"FLOOD  warning"')) == WORD_FLOOD_POSTS
    assert query.count(Filters(search='"flood again"')) == FLOOD_POSTS        # "#Flood again!": the word in a tag
    assert query.count(Filters(search="flood -#flood")) == WORD_FLOOD_POSTS
    counts = query.search_counts(Filters(search="flood today", classes=["negative"]))
    negative = planted["scored"][planted["scored"]["prediction"] == "negative"]["text"]
    assert counts == {"flood": int(negative.str.contains(r"(?i)\bflood\b").sum()),
                      "today": int(negative.str.contains("today").sum()), "all terms": 0}
    scored = planted["scored"]
    by_hand = scored["text"].str.contains(r"(?i)(?<![\w])#flood(?![\w])", regex=True)
    assert int(by_hand.sum()) == FLOOD_POSTS


def test_search_terms_are_read_as_analysts_type_them():
    terms = parse_search('#Rain @city_hall "cold  rain" rain* -spam, “smart quotes”')
    assert [(t.kind, t.label) for t in terms] == [
        ("hashtag", "#Rain"), ("mention", "@city_hall"), ("phrase", '"cold rain"'), ("prefix", "rain*"),
        ("word", "-spam"), ("phrase", '"smart quotes"')]
    assert parse_search("   ") == [] and parse_search('""') == []


def test_every_filter_narrows_the_views_and_they_agree_with_pandas(planted):
    query, scored = planted["query"], planted["scored"]
    filters = Filters(classes=["negative", "neutral"], confidence=(0.5, 0.9), conflict="none", labels="wrong",
                      values={"brand": ["Acme", "Bolt"], "campaign": [None, "spring"]},
                      date_column="date", date_from="2024-02-01", date_to="2024-04-30")
    days = pd.to_datetime(scored["date"], errors="coerce", format="%Y-%m-%d")
    expected = scored[scored["prediction"].isin(["negative", "neutral"]) & scored["confidence"].between(0.5, 0.9)
                      & ~scored["conflict"] & (scored["label"] != scored["prediction"])
                      & scored["brand"].isin(["Acme", "Bolt"]) & scored["campaign"].isin(["", "spring"])
                      & days.between("2024-02-01", "2024-04-30")]
    assert query.count(filters) == len(expected) > 0
    assert breakdown(query, filters, "brand").n == len(expected)
    assert over_time(query, filters, "date", "W").n == len(expected)
    assert gallery(query, filters, per_page=200).total == len(expected)


def test_user_text_in_filters_is_data_never_sql(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSA_HOME", str(tmp_path))
    frame = planted_frame(60, seed=3).rename(columns={"brand": 'we"ird; DROP'})
    frame.loc[0, 'we"ird; DROP'] = "x' OR 1=1 --"
    run = save_run(frame, source="posts.csv", engine="cli")
    with RunQuery.for_run(run) as query:
        assert query.count(Filters(values={'we"ird; DROP': ["x' OR 1=1 --"]})) == 1
        assert query.count(Filters(search="') OR TRUE --")) == 0
        groups = breakdown(query, Filters(), 'we"ird; DROP', top=50).to_dict()["groups"]
        assert "x' OR 1=1 --" in [g["value"] for g in groups]
        with pytest.raises(FilterError, match="no column"):
            query.count(Filters(values={"missing": ["a"]}))


def test_filters_round_trip_through_a_dict_json_and_a_query_string():
    filters = Filters(classes=["negative"], confidence=(0.6, 1.0), conflict="only", labels="wrong",
                      values={"brand": ["Acme", None]}, date_column="date", date_from="2024-01-01",
                      date_to="2024-02-01", search="#flood -spam")
    assert Filters.from_dict(json.loads(json.dumps(filters.to_dict()))) == filters
    params = filters.to_query_params()
    assert params["f:brand"] == ["Acme", ""] and params["q"] == "#flood -spam"
    assert Filters.from_query_params({**params, "run": "some-run", "by": "brand"}) == filters
    assert Filters(classes=["negative", "neutral", "positive"], confidence=(0, 1)).is_empty
    assert Filters().to_query_params() == {}
    for bad in ({"classes": ["happy"]}, {"confidence": [0.9, 0.1]}, {"labels": "maybe"}, {"date_from": "yesterday",
                "date_column": "date"}, {"date_from": "2024-01-01"}, {"colour": "red"}):
        with pytest.raises(FilterError):
            Filters.from_dict(bad)


def test_gallery_pages_through_the_filtered_posts_with_their_pictures(planted):
    query = planted["query"]
    negative = Filters(classes=["negative"])
    first = gallery(query, negative, page=1, per_page=10, order="confident")
    assert first.total == query.count(negative) and first.pages == -(-first.total // 10)
    assert len(first.posts) == 10 and (first.posts["prediction"] == "negative").all()
    assert list(first.posts["confidence"]) == sorted(first.posts["confidence"], reverse=True)
    assert str(first.posts["image_path"].iloc[0]).startswith("/pictures/")
    second = gallery(query, negative, page=2, per_page=10, order="confident")
    assert not set(first.posts["row"]) & set(second.posts["row"])
    last = gallery(query, negative, page=10_000, per_page=10)
    assert last.page == last.pages and 0 < len(last.posts) <= 10


@pytest.mark.parametrize("cells, expected", [
    (["2024-03-05", "2024-03-05T23:30:00-02:00", "2024-03-06 08:00"], ["2024-03-05", "2024-03-06", "2024-03-06"]),
    (["1709632800", "1709719200"], ["2024-03-05", "2024-03-06"]),
    (["13/02/2024", "05/03/2024"], ["2024-02-13", "2024-03-05"]),             # a day above 12: day first
    (["02/13/2024", "03/05/2024"], ["2024-02-13", "2024-03-05"]),             # a day above 12: month first
    (["Wed Oct 10 20:19:24 +0000 2018"], ["2018-10-10"]),
    (["Mar 5, 2024", "5 March 2024"], ["2024-03-05", "2024-03-05"]),
])
def test_dates_in_the_formats_social_tools_export(tmp_path, cells, expected):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.analysis.dates import read_dates
    from core.analysis.sql import connect

    pq.write_table(pa.table({"d": cells}), tmp_path / "d.parquet")
    con = connect(str(tmp_path / "d.parquet"))
    reading = read_dates(con, "rows", "d", "VARCHAR")
    got = [t.date().isoformat() for (t,) in con.execute(f"SELECT {reading.expression} FROM rows").fetchall()]
    assert got == expected, reading


def test_intervals_behave_at_the_edges_and_match_the_multinomial_variance():
    low, high = wilson_interval([0, 10], [10, 10])
    assert low[0] == 0 and 0 < high[0] < 0.35 and high[1] == 1 and low[1] > 0.65
    net, low, high = net_interval([600], [300], [1000])
    se = np.sqrt((0.6 + 0.3 - 0.3 ** 2) / 1000)                  # (p+ + p− − (p+ − p−)²) / n
    assert low[0] == pytest.approx(0.3 - 1.96 * se, abs=0.005) and high[0] == pytest.approx(0.3 + 1.96 * se, abs=0.005)
    assert np.isnan(net_interval([0], [0], [0])[0][0])
    assert list(holm([0.01, 0.04, np.nan, 0.03])[[0, 1, 3]]) == pytest.approx([0.03, 0.06, 0.06])
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, abs=1e-6)      # the textbook 5 % critical values
    assert chi2_sf(np.array([5.991465]), 2)[0] == pytest.approx(0.05, abs=1e-6)
    steady = np.array([[30, 15, 55]] * 12, dtype=float)
    assert not unusual_periods(steady)["unusual"].any()
    tiny = unusual_periods(np.array([[1, 0, 2], [30, 15, 55]], dtype=float))
    assert not tiny["tested"][0] and np.isnan(tiny["p"][0])       # too few posts for chi-square: not tested
