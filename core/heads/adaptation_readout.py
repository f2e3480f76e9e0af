"""The linear read-out an adaptation fits on top of a head, and how it is written into the head exactly.

A head's new logits are a regularised logistic regression over two things: the head's own
(normalised) input features, and the parent head's logits (scaled up so the penalty barely touches
them). So the read-out can lean on what the parent knew where that helps and overrule it where the
user's labels disagree:

    logits(x) = A · z(x) + G · parent(x) + c        z(x): the features as the heads see them

scikit-learn fits it (``LogisticRegression``: lbfgs, L2). Replayed reference pairs join the fit with
the parent's probabilities as soft targets (each replayed row appears once per class, weighted by that
class's probability), so the read-out keeps answering as the parent did on the reference's kind of post.

Why linear: on TweetEval draws of 50–1,000 labels (``bench/adaptation.py``), re-training the head's
member MLPs reached 1–3 points less than this read-out for the same cost on the reference; the
MLPs need more labels than a user gives before their extra capacity pays.

Written into the head exactly, so a version keeps the shape (and the tensor names) every reader
knows: the read-out takes the place of the head's last member. The other K−1 members stay, their last
layers mixed by G (scaled by K/(K−1) for the mean over K), and they are the "parent logits" the
read-out is fitted on. The last member's hidden units come in pairs ±(A_j · z): GELU(u) − GELU(−u) = u
for the exact (erf) GELU, so that member computes A · z + c without approximation. Heads without a
read-out (e.g. the fused head when the user's posts have no pictures) are copied unchanged. Adapting
an adapted version replaces its read-out.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.heads.model import LateFusionHeads, MemberMLPs, member_logits
from core.io.labels import LABELS

N_CLASSES = len(LABELS)


@dataclass
class Readout:
    """logits = z @ A.T + parent_logits @ G.T + c for one head (A: classes × features, G: classes × classes)."""
    A: np.ndarray
    G: np.ndarray
    c: np.ndarray

    def logits(self, z: np.ndarray, parent_logits: np.ndarray) -> np.ndarray:
        """The read-out's logits for inputs ``z`` (normalised features) and the parent's logits on them."""
        return z @ self.A.T + parent_logits @ self.G.T + self.c


def head_inputs(model: LateFusionHeads, text: np.ndarray, image: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's input as the model feeds it (normalised by the model's stored mean and std)."""
    with torch.no_grad():
        t, i = model.normalise(torch.as_tensor(text, dtype=torch.float32), torch.as_tensor(image, dtype=torch.float32))
    t, i = t.numpy(), i.numpy()
    return {"text": t, "image": i, "fused": np.concatenate([t, i], axis=1)}


def head_logits(model: LateFusionHeads, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each head's logits (eval mode) on inputs from ``head_inputs``: what the head answers."""
    model.eval()
    with torch.no_grad():
        return {name: model.heads[name](torch.as_tensor(inputs[name])).numpy() for name in inputs}


def kept_logits(model: LateFusionHeads, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each head's logits from the members a read-out keeps (all but the last; zeros for a one-MLP
    head): the parent logits a read-out is fitted on."""
    model.eval()
    out = {}
    with torch.no_grad():
        for name, z in inputs.items():
            head = model.heads[name]
            if isinstance(head, MemberMLPs) and head.members > 1:
                out[name] = member_logits(head, torch.as_tensor(z))[:-1].mean(0).numpy()
            else:
                out[name] = np.zeros((len(z), N_CLASSES), dtype=np.float32)
    return out


def fit_readout(z: np.ndarray, parent: np.ndarray, labels: np.ndarray, *, C: float, parent_scale: float,
                replay_z: np.ndarray | None = None, replay_parent: np.ndarray | None = None,
                replay_targets: np.ndarray | None = None, replay_weight: float = 0.0) -> Readout:
    """Fit one head's read-out on the user's rows (``z``, the kept members' logits on them, labels), plus
    replayed rows (``replay_z``, kept logits ``replay_parent``) whose targets are the probabilities of
    the logits ``replay_targets`` (what the parent answers there). ``replay_weight`` is the replayed
    rows' total weight as a share of the user's (1.0: they count as much as all the user's labels)."""
    from scipy.special import softmax
    from sklearn.linear_model import LogisticRegression

    features = [np.hstack([z, parent_scale * parent])]
    targets, weights = [np.asarray(labels)], [np.ones(len(labels))]
    if replay_z is not None and len(replay_z) and replay_weight > 0:
        soft = softmax(replay_targets, axis=1)
        rows = np.hstack([replay_z, parent_scale * replay_parent])
        per_row = replay_weight * len(labels) / len(replay_z)
        for k in range(N_CLASSES):  # one copy per class, weighted by the parent's probability of it
            features.append(rows)
            targets.append(np.full(len(rows), k))
            weights.append(per_row * soft[:, k])
    y = np.concatenate(targets)
    if len(np.unique(y)) < N_CLASSES:
        raise ValueError("a read-out needs every label among its rows (user labels or replayed pairs)")
    weights = np.concatenate(weights)
    # C is per user label: with replayed rows the total weight grows, and so would the fit's freedom.
    model = LogisticRegression(C=C * len(labels) / weights.sum(), max_iter=2000)
    model.fit(np.vstack(features), y, sample_weight=weights)
    assert list(model.classes_) == list(range(N_CLASSES))
    d = z.shape[1]
    return Readout(model.coef_[:, :d].copy(), parent_scale * model.coef_[:, d:].copy(), model.intercept_.copy())


@torch.no_grad()
def _write_readout(head: nn.Module, readout: Readout) -> None:
    """Put ``readout`` into ``head`` in place of its last member (see the module's docstring)."""
    A, G, c = (torch.as_tensor(a, dtype=torch.float32) for a in (readout.A, readout.G, readout.c))
    if isinstance(head, MemberMLPs):
        K, H = head.members, head.hidden
        first_w, first_b, w2, b2 = head.first.weight, head.first.bias, head.w2, head.b2
        if K > 1:
            w2[:K - 1] = K / (K - 1) * w2[:K - 1] @ G.T
            b2[:K - 1] = K / (K - 1) * b2[:K - 1] @ G.T
        last = slice((K - 1) * H, K * H)
        first_w[last], first_b[last], w2[K - 1], b2[K - 1] = 0.0, 0.0, 0.0, K * c
        rows, out_w, scale = first_w[last], w2[K - 1], K
    else:  # a single MLP (nn.Sequential): the read-out is all of it
        H = head[0].out_features
        head[0].weight.zero_()
        head[0].bias.zero_()
        head[3].weight.zero_()
        head[3].bias.copy_(c)
        rows, out_w, scale = head[0].weight, head[3].weight.T, 1
    if H < 2 * N_CLASSES:
        raise ValueError(f"a head member of {H} hidden units cannot hold a read-out (needs {2 * N_CLASSES})")
    for j in range(N_CLASSES):  # units 2j, 2j+1 = ±(A_j · z); the second layer takes their difference
        rows[2 * j], rows[2 * j + 1] = A[j], -A[j]
        out_w[2 * j, j], out_w[2 * j + 1, j] = scale, -scale


def with_readouts(parent: LateFusionHeads, readouts: dict[str, Readout]) -> LateFusionHeads:
    """A copy of ``parent`` whose heads in ``readouts`` answer ``readout.logits(z, kept logits)`` exactly;
    the other heads are unchanged copies. ``parent`` itself is not changed."""
    model = copy.deepcopy(parent)
    for name, readout in readouts.items():
        _write_readout(model.heads[name], readout)
    return model.eval()
