"""Nothing is encoded twice: the feature store keys vectors by encoder id + content hash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.features.store import FeatureStore, content_key, text_features


class CountingEncoder:
    id, dim = "text:fake:1", 4

    def __init__(self):
        self.seen = []

    @property
    def feature_key(self) -> str:  # what the feature store files its vectors under
        return self.id

    def encode(self, texts):
        self.seen.extend(texts)
        return np.array([[len(t), 1, 2, 3] for t in texts], dtype=np.float32)


def test_same_text_is_encoded_once_even_across_store_reopens(tmp_path):
    path = tmp_path / "features.sqlite"
    encoder = CountingEncoder()
    first = text_features(encoder, FeatureStore(path), ["good", "bad", "good"])
    assert encoder.seen == ["good", "bad"]
    again = text_features(encoder, FeatureStore(path), ["bad", "good", "new"])
    assert encoder.seen == ["good", "bad", "new"]
    np.testing.assert_array_equal(first[1], again[0])
    np.testing.assert_array_equal(first[0], again[1])


def test_another_encoder_never_reads_these_vectors(tmp_path):
    store = FeatureStore(tmp_path / "f.sqlite")
    a, b = CountingEncoder(), CountingEncoder()
    b.id = "text:fake:2"
    text_features(a, store, ["x"])
    text_features(b, store, ["x"])
    assert a.seen == ["x"] and b.seen == ["x"]
    assert store.count("text:fake:1") == 1 and store.count() == 2


def test_content_key_is_sha256_of_bytes():
    assert content_key("abc") == content_key(b"abc")
    assert len(content_key(b"")) == 64


def test_a_damaged_store_is_moved_aside_with_a_warning_and_started_again(tmp_path):
    """A store file overwritten with junk (a crash on a bad disk) does not stop scoring: it is kept
    under another name for inspection, a new store starts empty and works."""
    import numpy as np
    import pytest

    from core.features.store import FeatureStore

    path = tmp_path / "features.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(UserWarning, match="was damaged"):
        store = FeatureStore(path)
    assert store.moved_aside is not None and store.moved_aside.read_bytes().startswith(b"this is not a database")
    store.put_many("enc", ["k"], np.ones((1, 3), dtype=np.float32))
    assert store.get_many("enc", ["k"])["k"].tolist() == [1.0, 1.0, 1.0]
    reopened = FeatureStore(path)  # the new store is a healthy one: no warning, the vector is there
    assert reopened.moved_aside is None and reopened.count("enc") == 1


def test_a_disk_that_fills_up_stops_the_caching_not_the_scoring(tmp_path):
    """In a child process whose files may not grow past 256 KiB: the store takes what fits, then says
    once that new features are not kept, and every later call still answers."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import resource, signal, warnings
        import numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (262144, 262144))
        from core.features.store import FeatureStore
        store = FeatureStore({str(tmp_path / "features.sqlite")!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for n in range(40):
                store.put_many("enc", [f"k{{n}}-{{i}}" for i in range(10)], np.ones((10, 384)))
        kept = store.count("enc")
        assert 0 < kept < 400, kept
        assert len(caught) == 1 and "cannot be written" in str(caught[0].message), [str(w.message) for w in caught]
        assert len(store.get_many("enc", ["k0-0"])) == 1
        print("ok", kept)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr


def test_a_data_folder_that_cannot_be_written_keeps_features_in_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="in memory"):
        store = FeatureStore(blocker / "home" / "features.sqlite")
    store.put_many("enc", ["a"], np.ones((1, 4)))
    assert store.count() == 1 and store.notice


def test_a_store_damaged_under_a_running_process_is_a_cache_miss_not_a_crash(tmp_path):
    path = tmp_path / "features.sqlite"
    store = FeatureStore(path)
    store.put_many("enc", ["a"], np.ones((1, 4)))
    store._db.close()
    path.write_bytes(b"junk" * 4096)  # overwritten while the process still runs
    store._db = __import__("sqlite3").connect(str(path), check_same_thread=False)
    with pytest.warns(UserWarning, match="cannot be read"):
        assert store.get_many("enc", ["a"]) == {}
    with pytest.warns(UserWarning, match="damaged"):  # the next start moves it aside and begins again
        assert FeatureStore(path).count() == 0


# ----- the size bound: any visitor's texts and pictures must not fill the disk ------------------------

def vectors(n: int, dim: int = 384) -> np.ndarray:
    return np.random.default_rng(n).random((n, dim), dtype=np.float32)


def test_past_its_bound_the_store_drops_the_least_recently_used_and_the_file_shrinks(tmp_path):
    path = tmp_path / "features.sqlite"
    store = FeatureStore(path, max_bytes=0)  # no bound yet: 3,000 vectors of 1.5 KB
    store.put_many("enc", [f"old-{i}" for i in range(3000)], vectors(3000))
    unbounded = store.size_bytes()
    assert unbounded > 4_000_000
    store.close()

    bounded = FeatureStore(path, max_bytes=1_000_000)
    assert bounded.get_many("enc", ["old-0"])  # read: the first written is now the most recently used
    bounded.put_many("enc", ["new"], vectors(1))  # the next write brings the store within its bound
    assert bounded.size_bytes() <= 1_000_000 < unbounded  # the file itself shrank, not only its contents
    assert 400 < bounded.count() < 700  # down to about 90 % of the bound
    kept = bounded.get_many("enc", ["old-0", "old-1", "old-2000", "old-2999", "new"])
    assert set(kept) == {"old-0", "old-2999", "new"}  # the least recently used went first

    for round_ in range(5):  # it stays bounded as more comes in
        bounded.put_many("enc", [f"more-{round_}-{i}" for i in range(500)], vectors(500))
        assert bounded.size_bytes() <= 1_000_000
    assert "old-2999" not in bounded.get_many("enc", ["old-2999"])  # not used since: it went in its turn


def test_what_is_read_is_kept_over_what_was_only_written(tmp_path):
    store = FeatureStore(tmp_path / "features.sqlite", max_bytes=800_000)
    store.put_many("enc", [f"a-{i}" for i in range(150)], vectors(150))
    store.put_many("enc", [f"b-{i}" for i in range(150)], vectors(150))
    a_keys = [f"a-{i}" for i in range(150)]
    assert len(store.get_many("enc", a_keys)) == 150  # the older batch is used again (a re-scored table)
    store.put_many("enc", [f"c-{i}" for i in range(150)], vectors(150))
    assert len(store.get_many("enc", a_keys)) == 150
    assert store.count() < 450 and len(store.get_many("enc", [f"b-{i}" for i in range(150)])) < 150


def test_reading_writes_nothing_until_a_batch_of_last_use_stamps_is_due(tmp_path, monkeypatch):
    import core.features.store as store_module

    monkeypatch.setattr(store_module, "TOUCH_BATCH", 100)
    store = FeatureStore(tmp_path / "features.sqlite")
    store.put_many("enc", [f"k{i}" for i in range(200)], vectors(200))
    writes = store._db.total_changes
    for i in range(99):
        store.get_many("enc", [f"k{i}"])
    assert store._db.total_changes == writes  # 99 reads: not one write
    store.get_many("enc", ["k99"])
    assert store._db.total_changes == writes + 100  # the 100th: one batch stamps them all


def test_a_store_from_before_the_bound_is_upgraded_and_shrinks(tmp_path):
    import sqlite3

    path = tmp_path / "features.sqlite"
    old = sqlite3.connect(path)  # the earlier layout: no last-use column, no incremental vacuum
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE features (encoder_id TEXT NOT NULL, key TEXT NOT NULL, dim INTEGER NOT NULL,"
                " vector BLOB NOT NULL, PRIMARY KEY (encoder_id, key))")
    old.executemany("INSERT INTO features VALUES ('enc', ?, 384, ?)",
                    [(f"k{i}", v.tobytes()) for i, v in enumerate(vectors(2000))])
    old.commit()
    old.close()
    store = FeatureStore(path, max_bytes=1_000_000)
    assert store.get_many("enc", ["k5"])["k5"].shape == (384,)
    store.put_many("enc", ["new"], vectors(1))
    assert store.size_bytes() <= 1_000_000 and {"k5", "new"} <= set(store.get_many("enc", ["k5", "new"]))


def test_the_bound_is_a_setting_with_a_two_gib_default(tmp_path, monkeypatch):
    from core import config

    monkeypatch.delenv("MMSA_FEATURE_STORE_MAX_BYTES", raising=False)
    assert FeatureStore(tmp_path / "a.sqlite").max_bytes == 2 * 2 ** 30
    for value, expected in (("500M", 500 * 2 ** 20), ("1GiB", 2 ** 30), ("250000", 250_000), ("0", 0),
                            ("lots", 2 * 2 ** 30)):
        monkeypatch.setenv("MMSA_FEATURE_STORE_MAX_BYTES", value)
        assert config.feature_store_max_bytes() == expected, value
    monkeypatch.setenv("MMSA_FEATURE_STORE_MAX_BYTES", "300K")
    assert FeatureStore(tmp_path / "b.sqlite").max_bytes == 300 * 1024  # what the app and the CLI open
