"""The heads a user trains are small ensembles: several MLPs per head, each learning on its own,
averaged when they predict; they save and load like any version, and older single-MLP versions
still load."""
from __future__ import annotations

import numpy as np
import torch

from core.features.sets import FeatureSet
from core.heads.model import HeadConfig, LateFusionHeads, MemberMLPs, member_logits
from core.heads.training import TrainConfig, train_heads
from core.io.labels import LABELS
from core.scoring.predict import heads_from_card


def card(**shape) -> dict:
    """The card of a head over 16-d text and 8-d image features with ``shape``."""
    return {"labels": list(LABELS), "text_encoder": {"spec": "text", "id": "text:1", "dim": 16},
            "image_encoder": {"spec": "image", "id": "image:1", "dim": 8}, **shape}


def blobs(n: int, seed: int) -> FeatureSet:
    centres = np.random.default_rng(0).normal(size=(3, 24))  # the same classes in every set
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    text = centres[labels, :16] + rng.normal(size=(n, 16))
    image = centres[labels, 16:] + rng.normal(size=(n, 8))
    return FeatureSet(text.astype(np.float32), image.astype(np.float32), labels)


def test_an_ensemble_head_predicts_the_average_of_members_that_learned_apart():
    result = train_heads(blobs(300, 1), blobs(60, 2), TrainConfig(members=4, hidden=16, max_epochs=60))
    model = result.model
    fused = model.heads["fused"]
    assert isinstance(fused, MemberMLPs) and fused.first.out_features == 4 * 16 and fused.w2.shape == (4, 16, 3)
    x = torch.randn(5, 24)
    with torch.no_grad():
        each = member_logits(fused, x)
        assert each.shape == (4, 5, 3)
        torch.testing.assert_close(fused(x), each.mean(0))
        # Independently initialised and trained: the members are different models.
        assert not torch.allclose(each[0], each[1])
    dev = blobs(60, 2)
    with torch.no_grad():
        logits = model(torch.as_tensor(dev.text), torch.as_tensor(dev.image))["fused"].numpy()
    assert (logits.argmax(1) == dev.labels).mean() > 0.9


def test_an_ensemble_version_saves_and_loads_from_its_card():
    model = LateFusionHeads(HeadConfig(16, 8, hidden=16, members=3)).eval()
    loaded = heads_from_card(model.tensors(), card(hidden=16, dropout=0.5, members=3))
    text, image = torch.randn(4, 16), torch.randn(4, 8)
    with torch.no_grad():
        for name, value in model(text, image).items():
            torch.testing.assert_close(loaded(text, image)[name], value)


def test_versions_saved_with_one_mlp_per_head_still_load():
    old = LateFusionHeads(HeadConfig(16, 8, hidden=32)).eval()  # the pre-ensemble layout
    assert "heads.fused.0.weight" in old.tensors()
    loaded = heads_from_card(old.tensors(), card(hidden=32, dropout=0.5))  # no "members"
    text, image = torch.randn(2, 16), torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(text, image)["fused"], old(text, image)["fused"])
