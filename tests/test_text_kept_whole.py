"""An analyst's table comes back whole: every text cell of a scored CSV (command line, the batch page's
download) is the cell they uploaded, byte for byte, however long, however spaced, whatever its script;
the model reads at most the first 2,000 characters and the row's message says so."""
from __future__ import annotations

import pandas as pd
import pytest

from core import cli
from core.features.store import FeatureStore
from core.io.tables import MAX_TEXT_CHARS, prepare_pairs, read_table, to_safe_csv_bytes
from core.scoring.batch import score_rows

from .conftest import fake_predictor

# Scripts, emoji sequences, a combining accent, no-break and zero-width spaces, a tab, line breaks of both
# kinds, quotes and commas; never a formula's first character (those get a leading ' in any download).
MIXED = ("  Ünïcödé — “curly”, commas, 😀👍🏽 👨‍👩‍👧 مرحبا 中文 e\u0301 \u00a0nbsp\u00a0 zero\u200bwidth "
         "tab\there, line\nbreak, crlf\r\nend, \"double\" quotes  ")
LONG = (MIXED * 50)[:5000] + "   "  # 5,003 characters, trailing spaces included

TEXTS = [LONG, MIXED, "  padded  ", "plain", "\u3000full-width space\u3000"]


def the_table(folder):
    return pd.DataFrame({"id": [f"r{k}" for k in range(len(TEXTS))], "text": TEXTS,
                         "image": ["pic_0.png", "", "pic_1.png", "", "sub/../pic_2.png"],
                         "note": [f"n{k}" for k in range(len(TEXTS))]})


def assert_cells_equal(got, want) -> None:
    assert [c.encode("utf-8") for c in got] == [c.encode("utf-8") for c in want]


@pytest.fixture()
def posts_csv(tmp_path, table):
    csv = tmp_path / "posts.csv"
    the_table(table["folder"]).to_csv(csv, index=False)
    assert read_table(csv)["text"].tolist() == TEXTS  # the file itself holds the cells exactly
    return csv


def test_the_command_lines_scored_csv_gives_back_every_text_and_image_cell_exactly(posts_csv, table, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr("core.cli.scoring.load_predictor", lambda head, device=None: fake_predictor())
    out = tmp_path / "scored.csv"
    assert cli.main(["score", "--csv", str(posts_csv), "--images", str(table["folder"]), "--out", str(out)]) == 0
    back, sent = read_table(out), read_table(posts_csv)
    assert_cells_equal(back["text"], sent["text"])
    assert back["image"].tolist() == sent["image"].tolist()
    assert back["note"].tolist() == sent["note"].tolist()
    assert (back["status"] != "error").all()
    assert f"text is {len(LONG.strip()):,} characters; the model read the first {MAX_TEXT_CHARS:,}" \
        in back["message"][0]


def test_with_the_text_in_another_column_both_that_column_and_text_come_back_exactly(posts_csv, table, tmp_path,
                                                                                      monkeypatch):
    renamed = tmp_path / "renamed.csv"
    read_table(posts_csv).rename(columns={"text": "post"}).to_csv(renamed, index=False)
    monkeypatch.setattr("core.cli.scoring.load_predictor", lambda head, device=None: fake_predictor())
    out = tmp_path / "scored.csv"
    assert cli.main(["score", "--csv", str(renamed), "--text-column", "post", "--images", str(table["folder"]),
                     "--out", str(out)]) == 0
    back = read_table(out)
    assert_cells_equal(back["post"], TEXTS)
    assert_cells_equal(back["text"], TEXTS)


def test_the_batch_pages_download_gives_back_every_text_cell_exactly(posts_csv, table):
    from app.batch_report import download_frame

    uploaded = read_table(posts_csv.read_bytes())
    rows = prepare_pairs(uploaded, id_column="id", images_root=table["folder"])
    assert len(rows[0].text) == MAX_TEXT_CHARS  # what the model reads
    frame = score_rows(rows, fake_predictor(store=FeatureStore(None))).frame
    assert_cells_equal(frame["text"], TEXTS)  # on the page's table too
    downloaded = read_table(to_safe_csv_bytes(download_frame(frame, uploaded)))
    assert_cells_equal(downloaded["text"], TEXTS)
    assert downloaded["image"].tolist() == uploaded["image"].tolist()
