"""May the encoders run under fp16 / bf16 autocast? Checked once per machine, head and dtype.

Autocast makes the encoders' PyTorch forward pass cheaper on a GPU (half-precision matmuls and
convolutions); the heads always stay fp32. It is enabled only after this check: a fixed sample of
pairs (the shipped reference photos of the int8 check, each paired with one of ``SAMPLE_TEXTS``) is
encoded once in fp32 and once under autocast on the encoders' device, the head version scores both
feature sets in fp32 with its temperatures, and the check passes when every head (text-only,
image-only, fused) predicts the same class on every pair and no probability moves by more than
``MAX_PROB_DIFF``. Where it fails, the encoders stay in fp32 and the predictor's ``notice`` says so.

The setting lives on the encoders, which the app shares between the head versions it serves: the
predictor built last decides it (a corrected head whose check fails puts them back to fp32 for all).

The result is cached in ``$MMSA_HOME/precision-check.json`` under a key made of the encoder ids, the
head's weights, the dtype, the device (GPU name and CUDA version, or CPU model and flags) and the
torch version, so it runs once per machine like the int8 check.

Which precision is asked for: the argument, else ``$MMSA_PRECISION``, else ``auto`` = fp16 on a GPU
(10 mantissa bits against bf16's 7: closer to fp32) and fp32 on the CPU (where the int8 image graph
and the fp32 ONNX Runtime text graph are the fast path). ``bf16`` on the CPU is accepted: that is how
the check itself is tested on machines without a GPU.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import torch

from core import config
from core.checks_cache import remembered_check
from core.encoders.base import AUTOCAST_DTYPES
from core.errors import InputError
from core.io.labels import HEAD_NAMES

PRECISION_ENV = config.PRECISION_ENV
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Besides equal predictions, no calibrated probability may move by more than 3 points under autocast.
# On the sample, bf16 on the CPU moves them by up to 1.35 points and fp16 by 0.13 (AMD EPYC, AVX-512,
# torch 2.13, the shipped head); 3 points leaves room for other kernels' rounding while staying well
# below what changes the reading of a chart or of a confidence filter.
MAX_PROB_DIFF = 0.03
CACHE_NAME = "precision-check.json"
CHECK_VERSION = 1  # bump when the rule or the sample changes: cached results are ignored
SAMPLE_TEXTS = (
    "What a beautiful morning at the temple, feeling blessed!",
    "Worst day ever. Everything is broken and nobody cares.",
    "The museum opens at nine on weekdays.",
    "so happy to see the flowers blooming again :)",
    "I can't believe they cancelled the concert, so disappointed",
    "New photo from the trip",
    "Absolutely love this place, best holiday of my life #travel",
    "Traffic jam again... hate Mondays",
    "Meeting notes attached, see you at 3pm",
    "RIP to the old tree in the park, sad to see it go",
    "Great game last night!!! Champions!",
    "Rain all week according to the forecast",
)


@dataclass(frozen=True)
class PrecisionCheck:
    """Outcome of the autocast check for one head on one device."""

    passed: bool
    dtype: str                  # 'fp16' / 'bf16'
    device: str                 # e.g. 'cuda:0 (NVIDIA H200)' or 'cpu'
    n_pairs: int
    agreeing: int               # (pair, head) predictions equal to fp32's, out of n_pairs × 3
    max_prob_diff: float        # largest |p_autocast − p_fp32| over pairs, heads and classes
    checked_at: str

    def summary(self) -> str:
        """One line for reports: passed or failed, where, agreement and the largest probability change."""
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.dtype} autocast check {verdict} on {self.device}: {self.agreeing}/{self.n_pairs * 3} "
                f"predictions equal to fp32, probabilities within {self.max_prob_diff:.4f} "
                f"(allowed {MAX_PROB_DIFF}) on {self.n_pairs} reference pairs")

    def as_dict(self) -> dict:
        """The check's fields as a plain dict (for JSON)."""
        return asdict(self)


def requested_precision(requested: str | None, device: torch.device) -> str:
    """'fp32', 'fp16' or 'bf16' from ``requested``, else ``$MMSA_PRECISION``, else 'auto' (fp16 on a GPU,
    fp32 on the CPU). ValueError for any other name."""
    name = (requested or config.precision_setting() or "auto").strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"unknown precision '{name}' (argument or {PRECISION_ENV}): use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return name


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _device_identity(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version()}
    from core.machine import machine_block

    block = machine_block(measure=False)
    return {"cpu_model": block["cpu_model"], "arch": block["arch"], "flags": block["flags"]}


def _sample_features(predictor, dtype: torch.dtype | None, pictures, texts) -> tuple[np.ndarray, np.ndarray]:
    """Text and image features of the sample from the encoders' PyTorch networks, in fp32 (None) or
    under autocast ``dtype``, on each encoder's device."""
    text_enc, image_enc = predictor.text_encoder, predictor.image_encoder
    previous = text_enc.autocast, image_enc.autocast
    try:
        text_enc.set_autocast(dtype)
        image_enc.set_autocast(dtype)
        with torch.inference_mode():
            tokens = text_enc.tokenize(texts)
            with text_enc.autocast_context():
                text = text_enc.forward_features(tokens["input_ids"].to(text_enc.device),
                                                 tokens["attention_mask"].to(text_enc.device))
            pixels = torch.stack([image_enc.preprocess(image_enc.decode(p.read_bytes())) for p in pictures])
            with image_enc.autocast_context():
                image = image_enc.forward_features(pixels.to(image_enc.device))
        return text.float().cpu().numpy(), image.float().cpu().numpy()
    finally:
        text_enc.set_autocast(previous[0])
        image_enc.set_autocast(previous[1])


def run_precision_check(predictor, dtype_name: str, pictures=None, texts=None) -> PrecisionCheck:
    """Compare the predictor's calibrated predictions with fp32 encoders and with ``dtype_name``
    ('fp16' / 'bf16') autocast encoders on the sample pairs. Does not read or write the cache and
    leaves the encoders as it found them."""
    from core.encoders.int8_check import reference_pictures

    pictures = list(pictures) if pictures is not None else reference_pictures()
    texts = list(texts) if texts is not None else list(SAMPLE_TEXTS)
    if not pictures or not texts:
        raise FileNotFoundError("the autocast check needs reference pictures and texts")
    n = max(len(pictures), len(texts))
    pictures = [pictures[i % len(pictures)] for i in range(n)]
    texts = [texts[i % len(texts)] for i in range(n)]
    ones = np.ones(n, dtype=bool)
    reference = predictor.probabilities(*_sample_features(predictor, None, pictures, texts), ones, ones)
    candidate = predictor.probabilities(*_sample_features(predictor, AUTOCAST_DTYPES[dtype_name], pictures, texts),
                                        ones, ones)
    agreeing = sum(int((reference[h].argmax(1) == candidate[h].argmax(1)).sum()) for h in HEAD_NAMES)
    max_diff = max(float(np.abs(reference[h] - candidate[h]).max()) for h in HEAD_NAMES)
    return PrecisionCheck(passed=bool(agreeing == n * len(HEAD_NAMES) and max_diff <= MAX_PROB_DIFF),
                          dtype=dtype_name, device=_device_label(predictor.text_encoder.device), n_pairs=n,
                          agreeing=agreeing, max_prob_diff=round(max_diff, 5),
                          checked_at=datetime.now(UTC).isoformat(timespec="seconds"))


def _cache_key(predictor, dtype_name: str) -> str:
    heads = hashlib.sha256()
    for name, tensor in sorted(predictor.heads.tensors().items()):
        heads.update(name.encode())
        heads.update(tensor.numpy().tobytes())
    identity = {"text": predictor.text_encoder.id, "image": predictor.image_encoder.id,
                "heads": heads.hexdigest()[:16], "temperatures": predictor.temperatures, "dtype": dtype_name,
                "device": _device_identity(predictor.text_encoder.device), "torch": torch.__version__,
                "max_prob_diff": MAX_PROB_DIFF, "version": CHECK_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def cached_precision_check(predictor, dtype_name: str) -> PrecisionCheck:
    """The check for this head, dtype and device: from ``$MMSA_HOME/precision-check.json`` when it ran
    before, else run now and remember it (a cache that cannot be written only means it runs again)."""
    return remembered_check(CACHE_NAME, _cache_key(predictor, dtype_name),
                            lambda: run_precision_check(predictor, dtype_name), PrecisionCheck)


def apply_precision(predictor, requested: str | None = None) -> tuple[PrecisionCheck | None, str | None]:
    """Set the predictor's encoders to fp32 or to the requested autocast dtype once its check passes.
    Returns (the check, or None in fp32; a notice when autocast was asked for and refused)."""
    name = requested_precision(requested, predictor.device)
    encoders = (predictor.text_encoder, predictor.image_encoder)
    if not all(hasattr(e, "set_autocast") for e in encoders):
        return None, (None if name == "fp32" else f"{name} autocast needs PyTorch encoders; running in fp32")
    for encoder in encoders:
        encoder.set_autocast(None)
    if name == "fp32":
        return None, None
    check = cached_precision_check(predictor, name)
    if check.passed:
        for encoder in encoders:
            encoder.set_autocast(AUTOCAST_DTYPES[name])
        return check, None
    notice = f"{check.summary()}. The encoders run in fp32 instead."
    warnings.warn(notice, stacklevel=2)
    return check, notice
