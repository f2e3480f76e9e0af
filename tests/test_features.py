"""Nothing is encoded twice: the feature store keys vectors by encoder id + content hash."""
from __future__ import annotations

import numpy as np

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
