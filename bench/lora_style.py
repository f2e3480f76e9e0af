"""A supervised LoRA fine-tune of the shipped text encoder on the user's labels, for ``bench/adaptation.py``.

Where SetFit tunes the encoder on pairs, this tunes it on the labels directly, as the shipped encoder's own
MVSA adapter was trained (``core.encoders.finetune``: LoRA rank 16 on the attention and feed-forward
projections, learning rate 5e-4 with 6 % warm-up, batch 32, 64 tokens): a copy of the network the heads
read (the MVSA-adapted MiniLM, last three layers pooled) gets a fresh LoRA adapter and a linear classifier,
trained with cross-entropy for ``epochs``; then the floor's logistic regression (standardised, C 1e-3) is
fitted on the tuned features. Settings chosen on TweetEval val draws (never its test file): 1-3 epochs
lifted a 1,000-label logistic regression from 66.3 % to 66.5-67.0 % on the rest of val; a full fine-tune
(learning rate 5e-5) lost 0.4-0.8 points.
"""
from __future__ import annotations

import copy
import math
import os
import time

import numpy as np
import torch
from torch import nn

from bench.setfit_style import _features, embed


def lora_style(encoder, texts: list[str], labels: np.ndarray, test_texts: list[str], *, epochs: int = 2,
               C: float = 1e-3, seed: int = 0) -> dict:
    """Tune a LoRA adapter on a copy of ``encoder``'s network with ``labels``, fit a logistic regression on
    the tuned features, predict ``test_texts``. Returns predictions and the seconds of tuning + fitting
    and of encoding the test texts."""
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    # A transformer's backward pass gains from a thread pool: all the cores, as `finetune-text` runs.
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return _tune_and_predict(encoder, texts, np.asarray(labels), test_texts, epochs=epochs, C=C, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _tune_and_predict(encoder, texts, labels, test_texts, *, epochs, C, seed) -> dict:
    from peft import LoraConfig, get_peft_model
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from core.encoders.finetune import FinetuneConfig

    settings = FinetuneConfig(epochs=epochs, seed=seed)
    started = time.perf_counter()
    model = get_peft_model(copy.deepcopy(encoder.model), LoraConfig(
        r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
        target_modules=list(settings.target_modules)))
    width = _features(encoder, model, texts[:1]).shape[1]
    classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(width, 3))
    params = [p for p in model.parameters() if p.requires_grad] + list(classifier.parameters())
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    total = math.ceil(len(texts) / settings.batch_size) * settings.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / (0.06 * total)) * max(0.0, 1 - step / total))
    loss_fn = nn.CrossEntropyLoss()
    target = torch.tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    tokens = encoder.max_tokens
    encoder.max_tokens = settings.max_tokens
    try:
        for _ in range(settings.epochs):
            model.train()
            classifier.train()
            order = torch.randperm(len(texts), generator=generator)
            for start in range(0, len(order), settings.batch_size):
                idx = order[start:start + settings.batch_size]
                loss = loss_fn(classifier(_features(encoder, model, [texts[i] for i in idx])), target[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        head = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
        head.fit(embed(encoder, model, list(texts)), labels)
        tuned = time.perf_counter() - started
        predictions = head.predict(embed(encoder, model, list(test_texts)))
    finally:
        encoder.max_tokens = tokens
    return {"predictions": predictions, "seconds": tuned,
            "encode_test_seconds": time.perf_counter() - started - tuned}
