"""What every encoder is: the spec names and sizes, the ``Encoder`` protocols that text and image
encoders satisfy, the error raised when a spec cannot load, and the pieces both kinds share (the lazy
ONNX Runtime backend, hashing weight files into an id, ``encoder_status`` for reports).

An encoder's ``id`` names the exact weights (``text:SPEC:HASH`` / ``image:SPEC:HASH``): the feature
store files vectors under it and head cards are checked against it, so it must change whenever the
numbers an encoder gives could change, and never otherwise."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from PIL import Image

MINILM_SPEC = "bundled:minilm-l6"
MINILM_LAYERS_SPEC = "bundled:minilm-l6-last3"
# Chosen over (6), (2, 4, 6) and (3, 4, 5, 6) with the LoRA adapter on a held-out fold of train and on dev
# (README): every multi-layer set beat the last layer alone; (4, 5, 6) was best in both.
MINILM_POOLED_LAYERS = (4, 5, 6)
DEFAULT_TEXT_SPEC = MINILM_LAYERS_SPEC
FP32_IMAGE_SPEC = "bundled:efficientnet-lite0"
INT8_IMAGE_SPEC = "bundled:efficientnet-lite0-int8"
DEFAULT_IMAGE_SPEC = INT8_IMAGE_SPEC
SEED_TEXT_SPEC = "distilbert-base-uncased"
SEED_IMAGE_SPEC = "google/vit-base-patch16-224"
TEXT_MAX_TOKENS = 128  # tweets and review snippets fit; longer texts are truncated and flagged
TOKEN_MEMO_SIZE = 200_000  # texts whose token count a text encoder remembers (a few tens of MB at most)


class EncoderUnavailable(RuntimeError):
    """The spec names weights this machine cannot load (offline hub, missing package, bad folder)."""


@runtime_checkable
class Encoder(Protocol):
    """What the feature pipeline, scoring and the reports use of any encoder.

    ``spec`` is the string it was loaded from; ``id`` names its weights (see the module docstring);
    ``dim`` is the length of one vector; ``feature_key`` is what the feature store files this
    machine's vectors under (the id, unless this machine serves other numbers); ``notice`` says so
    when it does (else None); ``runtime`` names what runs it ('torch', 'onnxruntime', ...)."""

    spec: str
    id: str
    dim: int
    notice: str | None

    @property
    def feature_key(self) -> str:
        """What the feature store files this machine's vectors under."""

    @property
    def runtime(self) -> str:
        """What runs the encoder here: 'torch', 'onnxruntime', ..."""

    def encode(self, items: Sequence, batch_size: int = ...) -> np.ndarray:
        """A batch of inputs (texts or PIL pictures) → float32 array of shape (len(items), dim)."""

    def describe(self) -> str:
        """The spec as cards and reports record it (with the adapter for a fine-tuned text encoder)."""


@runtime_checkable
class ImageEncoderProtocol(Encoder, Protocol):
    """An image encoder: besides ``Encoder``, the steps ``encode`` is made of, which the explanations,
    the int8 check and the batch pipeline call one by one."""

    def decode(self, data: bytes) -> Image.Image:
        """Image file bytes → upright RGB picture, decoded as this encoder expects."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One picture → CHW float tensor, the network's input."""

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """A pixel batch (n, C, H, W) → feature tensor (n, dim) in PyTorch (differentiable)."""

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """A pixel batch → float32 array (n, dim) from the fastest runtime this machine has."""


def pick_device() -> torch.device:
    """The device encoders load on when none is given: ``core.device.choose_device()`` (``$MMSA_DEVICE``,
    else CUDA when this machine has it, else the CPU)."""
    from core.device import choose_device
    return choose_device()


def strict_fp32(device: torch.device) -> None:
    """On a GPU, make fp32 mean fp32: cuDNN convolutions and matmuls may otherwise run in TF32 (10-bit
    mantissa), and fp32 features from a GPU share the feature store with the CPU's (docs/performance.md,
    "GPU"). Autocast, where enabled, is a separate, checked choice with its own feature-store key."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_name(dtype: torch.dtype | None) -> str:
    """'fp16' / 'bf16' for an autocast dtype, 'fp32' for None."""
    return next((name for name, d in AUTOCAST_DTYPES.items() if d == dtype), "fp32")


FP32_FALLBACK_SUFFIX = ":fp32-fallback"  # image features from the fp32 network where the int8 graph cannot serve


def autocast_suffix_for(name: str) -> str:
    """The feature-store suffix of vectors computed under autocast ``name`` ('fp16' / 'bf16')."""
    return f":autocast-{name}"


def stored_feature_ids(encoder_id: str) -> dict[str, str]:
    """Every feature-store id an encoder (by its card id) may have filed vectors under on some machine,
    with how those vectors were computed: its own id first, then the int8 image graph's fp32 fallback and
    each autocast dtype's. Readers of stored features (themes, comparing versions) try them in order."""
    return {encoder_id: "as the card names",
            encoder_id + FP32_FALLBACK_SUFFIX: "by the fp32 network where the int8 graph could not serve",
            **{encoder_id + autocast_suffix_for(name): f"under {name} autocast" for name in AUTOCAST_DTYPES}}


class TorchPrecision:
    """What the PyTorch path of an encoder computes in: fp32, or fp16 / bf16 autocast once
    ``core.scoring.precision`` has checked that the predictions stay the same. Autocast features are
    filed under their own feature-store key (``<key>:autocast-bf16``): they are close to fp32 ones, not
    equal."""

    autocast: torch.dtype | None = None

    def set_autocast(self, dtype: torch.dtype | None) -> None:
        """Run the PyTorch forward pass under ``torch.autocast(device, dtype)``; None: plain fp32. Under
        autocast the fp32 ONNX Runtime graph (CPU) steps aside: it would give fp32 numbers."""
        self.autocast = dtype
        self._onnx.suspended = dtype is not None

    def autocast_context(self):
        """The autocast context of the PyTorch path (a no-op context in fp32)."""
        import contextlib
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def autocast_suffix(self) -> str:
        """':autocast-bf16' when the torch path serves under autocast, else ''."""
        return "" if self.autocast is None or not self.serves_torch() else autocast_suffix_for(autocast_name(self.autocast))

    def serves_torch(self) -> bool:
        """Whether ``encode`` runs the PyTorch network here (not an ONNX Runtime graph)."""
        return True


class _OnnxBackend:
    """Lazily built ONNX Runtime runner for an encoder; tied to the ``.model`` object it was exported
    from, so replacing the model (fine-tuning wraps it in peft) falls back to PyTorch."""

    def __init__(self, device: torch.device):
        from core.encoders.onnx import onnx_enabled

        self.wanted = device.type == "cpu" and onnx_enabled()
        self.suspended = False  # True while the encoder runs under autocast (a PyTorch-only feature)
        self.runner = None
        self.model_ref = None
        self.failed = False

    def get(self, encoder, build):
        if not self.wanted or self.failed or self.suspended:
            return None
        if self.runner is not None and self.model_ref is encoder.model:
            return self.runner
        if self.runner is not None or encoder.model.training:
            return None  # the model changed or is training: its weights may differ from the graph
        try:
            self.runner = build(encoder)
        except Exception as exc:
            import warnings
            warnings.warn(f"ONNX export of {encoder.id} failed ({type(exc).__name__}: {exc}); using PyTorch")
            self.runner = None
        self.failed = self.runner is None
        self.model_ref = encoder.model
        return self.runner


def _hash_files(paths: Sequence[Path], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _weight_files(folder: Path) -> list[Path]:
    names = ("*.safetensors", "*.bin", "*.pth", "*.pt")
    return [p for pattern in names for p in folder.glob(pattern)]


@dataclass(frozen=True)
class EncoderInfo:
    """The (spec, id, dim) triple a head card records for each encoder."""
    spec: str
    id: str
    dim: int

    def as_dict(self) -> dict:
        """The triple as a card's ``text_encoder`` / ``image_encoder`` entry."""
        return {"spec": self.spec, "id": self.id, "dim": self.dim}


def encoder_status(encoder) -> dict:
    """What an encoder serves on this machine, for reports: spec, id, runtime, device, precision
    ('fp32', or the autocast dtype), the int8 check (for the int8 image encoder on the CPU: passed,
    cosines, summary) and a notice when it serves something else."""
    check = getattr(encoder, "check", None)
    device = getattr(encoder, "device", None)
    return {"spec": encoder.describe(), "id": encoder.id, "runtime": encoder.runtime,
            "device": None if device is None else str(device),
            "precision": autocast_name(getattr(encoder, "autocast", None)),
            "int8_check": None if check is None else {**check.as_dict(), "summary": check.summary()},
            "notice": encoder.notice}
