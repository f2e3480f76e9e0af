"""A SetFit-style few-shot classifier on the shipped text encoder, for ``bench/adaptation.py``.

SetFit (Tunstall et al., 2022) fine-tunes a sentence encoder contrastively on pairs drawn from the few
labelled texts (same label → cosine 1, different → 0, mean squared error), then fits a logistic
regression on the tuned embeddings. The ``setfit`` package needs ``datasets``, ``evaluate`` and
``accelerate`` beside the project's requirements, so this is the same recipe in a few lines of torch,
on the very encoder the heads read (the MVSA-adapted MiniLM, last three layers pooled): SetFit's pair
sampling (per iteration, one same-label and one other-label partner per text), its cosine loss, batch
16, learning rate 2e-5 with 10 % warm-up, one epoch; capped at ``max_pairs`` pairs so a run stays in
minutes on 2 CPU cores (SetFit's default of 20 iterations is 40 pairs per label: 40,000 for 1,000 labels).
"""
from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
from torch import nn


def sample_pairs(labels: np.ndarray, iterations: int, max_pairs: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's pairs: per iteration, each text with a random text of its label (target 1) and one of
    another label (target 0); shuffled, at most ``max_pairs``."""
    rng = np.random.default_rng(seed)
    by_label = {k: np.flatnonzero(labels == k) for k in np.unique(labels)}
    pairs = []
    for _ in range(iterations):
        for i, label in enumerate(labels):
            pairs.append((i, int(rng.choice(by_label[label])), 1.0))
            others = np.flatnonzero(labels != label)
            if len(others):
                pairs.append((i, int(rng.choice(others)), 0.0))
    order = rng.permutation(len(pairs))[:max_pairs]
    return [pairs[k] for k in order]


def _features(encoder, model, texts: list[str]) -> torch.Tensor:
    """The encoder's pooled features of ``texts`` computed by ``model`` (a tuned copy of its network)."""
    batch = encoder.tokenize(texts)
    states = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   output_hidden_states=True).hidden_states
    layers = encoder.layers or (len(states) - 1,)
    return torch.cat([encoder.pool(states[layer], batch["attention_mask"]) for layer in layers], dim=-1)


@torch.no_grad()
def embed(encoder, model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Features of ``texts`` from the tuned network, in batches (eval mode)."""
    model.eval()
    return np.concatenate([_features(encoder, model, texts[s:s + batch_size]).numpy()
                           for s in range(0, len(texts), batch_size)])


def setfit_style(encoder, texts: list[str], labels: np.ndarray, test_texts: list[str], *, iterations: int = 20,
                 max_pairs: int = 2000, batch_size: int = 16, lr: float = 2e-5, seed: int = 0) -> dict:
    """Tune a copy of ``encoder``'s network on pairs of ``texts``, fit a logistic regression on the tuned
    features, predict ``test_texts``. Returns predictions and the seconds of tuning + fitting and of
    encoding the test texts."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # A transformer's backward pass gains from a thread pool: all the cores, as `finetune-text` runs.
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return _tune_and_predict(encoder, texts, labels, test_texts, iterations=iterations, max_pairs=max_pairs,
                                 batch_size=batch_size, lr=lr, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _tune_and_predict(encoder, texts, labels, test_texts, *, iterations, max_pairs, batch_size, lr, seed) -> dict:
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    model = copy.deepcopy(encoder.model).requires_grad_(True)  # the served encoder is frozen
    pairs = sample_pairs(np.asarray(labels), iterations, max_pairs, seed)
    steps = (len(pairs) + batch_size - 1) // batch_size
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    warmup = max(1, int(0.1 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (steps - step) / max(1, steps - warmup)))
    loss_fn = nn.MSELoss()
    model.train()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        left = _features(encoder, model, [texts[i] for i, _, _ in chunk])
        right = _features(encoder, model, [texts[j] for _, j, _ in chunk])
        target = torch.tensor([t for _, _, t in chunk])
        loss = loss_fn(nn.functional.cosine_similarity(left, right), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    head = LogisticRegression(max_iter=2000).fit(embed(encoder, model, list(texts)), labels)
    tuned = time.perf_counter() - started
    predictions = head.predict(embed(encoder, model, list(test_texts)))
    return {"predictions": predictions, "seconds": tuned, "encode_test_seconds": time.perf_counter() - started - tuned,
            "pairs": len(pairs)}
