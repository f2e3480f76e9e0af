"""Train the three heads from scratch on cached features: class-weighted loss, early stopping on dev,
fixed seeds (``train_heads``, each head keeping its best dev epoch).

The helpers below (one training at a time, seeding, the per-member forward pass and loss, one epoch
over shuffled batches) are shared with ``core.heads.correction``, which continues from a trained head.
"""
from __future__ import annotations

import copy
import functools
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from core.errors import InputError
from core.features.sets import FeatureSet
from core.heads.model import HeadConfig, HeadShape, LateFusionHeads, member_logits
from core.io.labels import HEAD_NAMES, LABELS
from core.scoring.metrics import weighted_f1


class TrainingRefused(InputError):
    """The data cannot train a useful head (one class, too few pairs, no features)."""


@dataclass
class TrainConfig:
    """Settings of a training run from scratch: head shape, optimiser, batch, epochs, patience, seed, class
    weighting, branch labels."""
    # The head shape (core.heads.model.HeadShape: 5 × 32-unit MLPs, dropout 0.5) and no class weighting were
    # chosen by 5-fold cross-validation on MVSA train: held-out fused accuracy 0.702 (one 256-unit
    # MLP, sqrt weights) → 0.730; weighted F1 0.700 → 0.720 (docs/experiments.md).
    hidden: int = HeadShape.hidden
    members: int = HeadShape.members
    dropout: float = HeadShape.dropout
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 128  # as good as 64 on MVSA dev and half the steps
    max_epochs: int = 60
    patience: int = 10
    seed: int = 0
    # "sqrt": weights ∝ 1/sqrt(class frequency); "inverse": ∝ 1/frequency, which over-predicts the rare
    # neutral class (10% of MVSA). "none" scored best in cross-validation, accuracy and weighted F1 alike.
    class_weighting: str = "none"
    # "pair": every head learns the pair label. "modality": the text / image heads learn MVSA's
    # text_label / image_label where given (the fused head always learns the pair label).
    branch_labels: str = "pair"

    def as_dict(self) -> dict:
        """The config as a plain dict (for cards)."""
        return asdict(self)


@dataclass
class TrainResult:
    """A trained model with its per-epoch history, each head's best epoch, and whether it stopped early."""
    model: LateFusionHeads
    history: list[dict] = field(default_factory=list)
    best_epoch: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False


MIN_TRAIN_PAIRS = 6


def check_trainable(labels: np.ndarray, minimum: int = MIN_TRAIN_PAIRS) -> None:
    """Raise TrainingRefused unless ``labels`` has at least ``minimum`` pairs and two different labels."""
    if len(labels) < minimum:
        raise TrainingRefused(f"training needs at least {minimum} labelled pairs; got {len(labels)}")
    present = sorted({LABELS[i] for i in np.unique(labels)})
    if len(present) < 2:
        raise TrainingRefused(f"all {len(labels)} labelled pairs are '{present[0]}'; training needs at "
                              "least two different labels or the head learns to say one thing")


# Dropout draws from torch's global random generator, which all threads share: two app sessions
# training at once would interleave their draws (and reset each other's seed), so neither would get
# the weights its settings give alone. One training at a time per process keeps every seeded run
# reproducible; scoring never takes this lock, so it is not held up.
_TRAINING_LOCK = threading.RLock()


def one_training_at_a_time(train_fn):
    """Decorator: the wrapped training function holds the process-wide training lock while it runs."""
    @functools.wraps(train_fn)
    def locked(*args, **kwargs):
        with _TRAINING_LOCK:
            return train_fn(*args, **kwargs)
    return locked


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray, mode: str) -> torch.Tensor:
    """Per-class loss weights for ``labels``: 'none', 'sqrt' (∝ 1/sqrt(frequency)) or 'inverse' (∝ 1/frequency),
    mean weight per example 1."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    if mode == "none":
        weights = np.ones_like(counts)
    elif mode == "sqrt":
        weights = 1.0 / np.sqrt(counts)
    elif mode == "inverse":
        weights = 1.0 / counts
    else:
        raise ValueError(f"unknown class weighting {mode!r}")
    weights = weights / (weights * counts).sum() * counts.sum()  # mean weight per example = 1
    return torch.tensor(weights, dtype=torch.float32)


def head_targets(data: FeatureSet, branch_labels: str) -> dict[str, torch.Tensor]:
    """The label tensor each head learns: the pair label, or for 'modality' the text / image labels where given."""
    pair = torch.as_tensor(data.labels, dtype=torch.long)
    targets = {"text": pair, "image": pair, "fused": pair}
    if branch_labels == "modality":
        if data.text_labels is not None:
            targets["text"] = torch.as_tensor(data.text_labels, dtype=torch.long)
        if data.image_labels is not None:
            targets["image"] = torch.as_tensor(data.image_labels, dtype=torch.long)
    return targets


@torch.no_grad()
def predict_logits(model: LateFusionHeads, data: FeatureSet, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Logits of every head on ``data`` in eval mode, ``batch_size`` rows at a time: head → (n, classes) array."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in HEAD_NAMES}
    for start in range(0, len(data), batch_size):
        text = torch.as_tensor(data.text[start:start + batch_size], dtype=torch.float32)
        image = torch.as_tensor(data.image[start:start + batch_size], dtype=torch.float32)
        for name, logits in model(text, image).items():
            parts[name].append(logits.numpy())
    return {name: np.concatenate(chunks) if chunks else np.zeros((0, len(LABELS)), np.float32)
            for name, chunks in parts.items()}


def _scores(logits: dict[str, np.ndarray], labels: np.ndarray, losses: dict[str, nn.Module]) -> dict[str, dict]:
    """Per-head dev loss, accuracy and weighted F1 (numpy: sklearn's import and checks cost more than
    the whole dev pass, once per epoch)."""
    target = torch.as_tensor(labels, dtype=torch.long)
    scores = {}
    for name in HEAD_NAMES:
        loss = float(losses[name](torch.as_tensor(logits[name]), target))
        pred = logits[name].argmax(1)
        scores[name] = {"loss": loss, "accuracy": float((pred == labels).mean()),
                        "weighted_f1": weighted_f1(labels, pred)}
    return scores


def _train_forward(model: LateFusionHeads, text: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each head's per-member logits (members, n, classes) on inputs already normalised by the model's
    own mean / std (done once per training run instead of once per step: the same elementwise ops,
    so the same numbers), with the same dropout draws in the same order as ``model.forward``; the
    mean over members is what ``model.forward`` returns."""
    text, image = model.input_dropout(text), model.input_dropout(image)
    return {
        "text": member_logits(model.heads["text"], text),
        "image": member_logits(model.heads["image"], image),
        "fused": member_logits(model.heads["fused"], torch.cat([text, image], dim=-1)),
    }


def _member_loss(loss_fn: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's own loss on the targets (members learn independently): their mean, or per member
    and row, members first, when ``loss_fn`` has ``reduction="none"``. Targets are class indices (n,)
    or probability rows (n, classes)."""
    return loss_fn(logits.flatten(0, 1), targets.repeat(len(logits), *([1] * (targets.dim() - 1))))


def _adamw(params, **kwargs) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where this torch supports it on CPU (the same update
    rule; about 4x less optimiser time than foreach on the heads), else foreach."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, foreach=True, **kwargs)


def train_one_epoch(n_rows: int, batch_size: int, generator: torch.Generator, optimiser: torch.optim.Optimizer,
                    batch_loss: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """One pass over ``n_rows`` rows in an order drawn from ``generator``, ``batch_size`` rows at a time:
    ``batch_loss(idx)`` gives the loss of the rows ``idx`` and the optimiser steps on it. Returns the
    sum over batches of loss × batch length (divide by ``n_rows`` for the epoch's mean loss)."""
    order = torch.randperm(n_rows, generator=generator)
    total = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        loss = batch_loss(idx)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(idx)
    return total


@one_training_at_a_time
def train_heads(train: FeatureSet, dev: FeatureSet, config: TrainConfig | None = None, *,
                on_epoch: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train all three heads together; each keeps the weights of its best dev weighted-F1 epoch."""
    config = config or TrainConfig()
    check_trainable(train.labels)
    if len(dev) == 0:
        # Without held-out pairs there is no best epoch to keep (sklearn would fail after epoch 1).
        raise TrainingRefused("the dev set has no usable labelled pairs; training needs held-out pairs "
                              "to choose the best epoch")
    seed_everything(config.seed)
    model = LateFusionHeads(HeadConfig(train.text.shape[1], train.image.shape[1], config.hidden, config.dropout,
                                       members=config.members))
    model.fit_normalisation(train.text, train.image)
    targets = head_targets(train, config.branch_labels)
    losses = {name: nn.CrossEntropyLoss(weight=class_weights(targets[name].numpy(), config.class_weighting))
              for name in HEAD_NAMES}
    optimiser = _adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    with torch.no_grad():
        text, image = model.normalise(torch.as_tensor(train.text, dtype=torch.float32),
                                      torch.as_tensor(train.image, dtype=torch.float32))
        dev_text, dev_image = model.normalise(torch.as_tensor(dev.text, dtype=torch.float32),
                                              torch.as_tensor(dev.image, dtype=torch.float32))
    dev_labels = np.asarray(dev.labels)
    generator = torch.Generator().manual_seed(config.seed)

    best = {name: (-1.0, 0, copy.deepcopy(model.heads[name].state_dict())) for name in HEAD_NAMES}
    history: list[dict] = []
    stale = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            logits = _train_forward(model, text[idx], image[idx])
            return sum(_member_loss(losses[name], logits[name], targets[name][idx]) for name in HEAD_NAMES)

        total = train_one_epoch(len(train), config.batch_size, generator, optimiser, batch_loss)
        model.eval()
        with torch.no_grad():
            dev_logits = {name: value.mean(0).numpy() for name, value in _train_forward(model, dev_text, dev_image).items()}
        scores = _scores(dev_logits, dev_labels, losses)
        improved = False
        for name in HEAD_NAMES:
            if scores[name]["weighted_f1"] > best[name][0]:
                best[name] = (scores[name]["weighted_f1"], epoch, copy.deepcopy(model.heads[name].state_dict()))
                improved = improved or name == "fused"
        stale = 0 if improved else stale + 1
        row = {"epoch": epoch, "train_loss": total / len(train) / len(HEAD_NAMES),
               "dev_loss": scores["fused"]["loss"], "dev_accuracy": scores["fused"]["accuracy"],
               "dev_weighted_f1": scores["fused"]["weighted_f1"],
               **{f"dev_{name}_accuracy": scores[name]["accuracy"] for name in ("text", "image")}}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if stale >= config.patience or (should_stop and should_stop()):
            break
    for name in HEAD_NAMES:
        model.heads[name].load_state_dict(best[name][2])
    model.eval()
    return TrainResult(model, history, {name: best[name][1] for name in HEAD_NAMES},
                       stopped_early=len(history) < config.max_epochs)
