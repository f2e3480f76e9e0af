"""Build the static int8 EfficientNet-Lite0 graph behind ``bundled:efficientnet-lite0-int8``.

Why: batch scoring on a 2-core CPU is compute-bound and the image network is its largest part.
EfficientNet-Lite was designed to quantise well (ReLU6, no squeeze-excite); with per-channel int8
weights and activation ranges calibrated on real photos, ONNX Runtime runs it ~2.5× faster here,
and the fused dev accuracy stays within 0.5 points of fp32 (the README gives the figures).

How: export the fp32 network (``core.encoders.onnx``, parity-checked against PyTorch), let onnxruntime
prepare it (shape inference, folding), then ``quantize_static`` in QDQ format with MinMax ranges from
``n`` calibration pictures decoded and preprocessed exactly as the int8 encoder does at inference
(JPEG draft ≥ 224 px).

Weights use 7 bits of the int8 range (``reduce_range``). ONNX Runtime's u8 × s8 kernel on x86 CPUs
without VNNI adds pairs of products in 16 bits, which full-range weights overflow: on 64 MVSA photos
8-bit weights gave a median cosine to the fp32 network of 0.99 with VNNI but 0.89 (min 0.34 on MVSA
pictures) on AVX2. With 7-bit weights no sum can overflow, and both kinds of CPU give bit-identical
features (median 0.97, min 0.86); ``core.encoders.int8_check`` confirms it on each machine. Measured
alternatives: u8 weights saturate the same way; per-tensor weights drop to 0.85; the QOperator
format gives the same numbers at the same speed. The graph ships in ``assets/models/efficientnet-lite0-int8/`` (~4 MB) with a
JSON card saying how it was made, so no user ever needs the calibration pictures; its hash is part of
the encoder id, so a rebuilt graph never mixes features with the old one in the feature store.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import InputError

CALIBRATION_BATCH = 32
# The shipped graph's settings (names as in ``onnxruntime.quantization``); ``bench/int8_parity.py``
# builds the alternatives from the same calibration pictures to compare them.
SHIPPED_OPTIONS = {"quant_format": "QDQ", "per_channel": True, "weight_type": "QInt8", "reduce_range": True}


def calibration_pixels(fp32_encoder, image_files: Sequence[Path]) -> np.ndarray:
    """(n, 3, 224, 224) float32: the pictures as the int8 encoder will see them (its draft decode, then
    the preprocessing it shares with the fp32 encoder)."""
    from core.encoders import EfficientNetLite0Int8Encoder
    from core.io.images import decode_image

    draft = EfficientNetLite0Int8Encoder.draft_size
    return np.stack([fp32_encoder.preprocess(decode_image(Path(f).read_bytes(), draft_size=draft)).numpy()
                     for f in image_files])


def build_int8_image_graph(image_files: Sequence[Path], out_dir: Path, *, source: str = "",
                           options: dict | None = None) -> dict:
    """Quantise EfficientNet-Lite0 with ``image_files`` as calibration set; write ``model.onnx`` and
    ``card.json`` into ``out_dir`` (atomically replaced). ``options`` (default ``SHIPPED_OPTIONS``):
    quant_format "QDQ" | "QOperator", per_channel, weight_type "QInt8" | "QUInt8", reduce_range.
    Returns the card."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from core.encoders import INT8_IMAGE_SPEC, EfficientNetLite0Encoder
    from core.encoders.onnx import image_runner

    if not image_files:
        raise InputError("no calibration pictures: give the images of a labelled CSV (e.g. MVSA train)")
    fp32 = EfficientNetLite0Encoder()
    runner = image_runner(fp32)
    if runner is None:
        raise RuntimeError("the fp32 EfficientNet-Lite0 graph could not be exported and checked; see the warning")
    pixels = calibration_pixels(fp32, image_files)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(pixels[i:i + CALIBRATION_BATCH] for i in range(0, len(pixels), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixels": batch}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        prepared, quantised = Path(work) / "prepared.onnx", Path(work) / "model.onnx"
        quant_pre_process(str(runner.path), str(prepared))
        chosen = {**SHIPPED_OPTIONS, **(options or {})}
        quantize_static(str(prepared), str(quantised), Batches(), quant_format=QuantFormat[chosen["quant_format"]],
                        per_channel=chosen["per_channel"], activation_type=QuantType.QUInt8,
                        weight_type=QuantType[chosen["weight_type"]], reduce_range=chosen["reduce_range"],
                        calibrate_method=CalibrationMethod.MinMax)
        os.replace(quantised, out_dir / "model.onnx")
    card = {
        "spec": INT8_IMAGE_SPEC,
        "made_from": fp32.id,
        "fp32_graph_sha256": hashlib.sha256(runner.path.read_bytes()).hexdigest(),
        "sha256": hashlib.sha256((out_dir / "model.onnx").read_bytes()).hexdigest(),
        "quantisation": {"options": chosen, "format": chosen["quant_format"],
                         "weights": ("int8" if chosen["weight_type"] == "QInt8" else "uint8")
                         + (" with a 7-bit range (no 16-bit overflow on CPUs without VNNI)" if chosen["reduce_range"] else "")
                         + (", per channel" if chosen["per_channel"] else ", per tensor"), "activations": "uint8, per tensor",
                         "calibration": "MinMax", "calibration_pictures": len(image_files),
                         "calibration_source": source, "decode": "JPEG draft >= 224 px, then the fp32 encoder's "
                         "resize + centre crop + (x - 127) / 128"},
        "onnxruntime": onnxruntime.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rebuild": "python -m core.cli quantize-image --csv ../shared/data/mvsa_single/train.csv "
                   "--images ../shared/data/mvsa_single/images --out assets/models/efficientnet-lite0-int8",
    }
    tmp = out_dir / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, out_dir / "card.json")
    return card


def calibration_files(csv_path: Path, images_dir: Path, n: int = 512, image_column: str = "image") -> list[Path]:
    """The first ``n`` readable pictures a CSV names (train data: never dev or test)."""
    from core.io.tables import read_table

    frame = read_table(csv_path)
    files = []
    for name in frame[image_column].dropna().astype(str):
        path = Path(images_dir) / name
        if path.is_file():
            files.append(path)
        if len(files) == n:
            break
    return files
