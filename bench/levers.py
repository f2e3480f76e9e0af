"""Side-by-side measurements of the speed levers (``bench_scoring.py --levers``).

Each lever is timed in the same process on the same pairs, one after the other, so a busy machine
shifts all of them alike; read ratios, not absolute numbers. Prints ``lever: value`` lines.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

SUBSET = 64


def _rate(fn, n: int, repeats: int = 3) -> float:
    """items per second, median of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return n / float(np.median(times))


def run_levers(rows, text_encoder, image_encoder, heads, card, log) -> dict:
    from PIL import Image

    from core.encoders.onnx import OnnxRunner, cache_folder
    from core.features.pipeline import encode_pairs
    from core.features.store import FeatureStore
    from core.io.images import decode_image

    rows = rows[:SUBSET]
    n = len(rows)
    texts = [r.text for r in rows]
    blobs = [Path(r.image_path).read_bytes() for r in rows]
    pixels = torch.stack([image_encoder.preprocess(decode_image(b)) for b in blobs])
    out: dict[str, float] = {}

    def report(name, value, unit):
        out[name] = value
        log(f"lever  {name:<48} {value:8.1f} {unit}")

    # ---- text encoder ------------------------------------------------------------------
    @torch.inference_mode()
    def torch_text(batch):
        order = sorted(range(n), key=lambda i: len(texts[i]))
        for s in range(0, n, batch):
            tok = text_encoder.tokenize([texts[i] for i in order[s:s + batch]])
            text_encoder.forward_features(tok["input_ids"], tok["attention_mask"])

    runner = text_encoder.onnx_runner()

    def ort_text(batch, r=runner):
        order = sorted(range(n), key=lambda i: len(texts[i]))
        for s in range(0, n, batch):
            tok = text_encoder.tokenizer([texts[i] for i in order[s:s + batch]], padding=True, truncation=True,
                                         max_length=text_encoder.max_tokens, return_tensors="np")
            r.run(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])

    for batch in (1, 16, 32):
        report(f"text torch fp32 batch {batch} (length-sorted)", _rate(lambda: torch_text(batch), n), "texts/s")
    if runner is not None:
        for batch in (1, 16, 32):
            report(f"text onnxruntime fp32 batch {batch} (no spinning)", _rate(lambda: ort_text(batch), n), "texts/s")
        int8 = _int8_text_runner(text_encoder, cache_folder)
        if int8 is not None:
            report("text onnxruntime int8 (dynamic) batch 32", _rate(lambda: ort_text(32, int8), n), "texts/s")
        spin = OnnxRunner(runner.path, spinning=True)
        report("text onnxruntime batch 32, threads spinning", _rate(lambda: ort_text(32, spin), n), "texts/s")

    # ---- image encoder -----------------------------------------------------------------
    model = image_encoder.model

    @torch.inference_mode()
    def torch_image(batch, channels_last=True):
        for s in range(0, n, batch):
            x = pixels[s:s + batch]
            if channels_last:
                model.extract_features(x.contiguous(memory_format=torch.channels_last)).mean((2, 3))
            else:
                model.extract_features(x.contiguous()).mean((2, 3))

    for batch in (1, 4, 16):
        report(f"image torch fp32 channels_last batch {batch}", _rate(lambda: torch_image(batch), n, 1), "images/s")
    model.to(memory_format=torch.contiguous_format)
    report("image torch fp32 contiguous batch 4", _rate(lambda: torch_image(4, False), n, 1), "images/s")
    model.to(memory_format=torch.channels_last)
    image_runner = image_encoder.onnx_runner()
    if image_runner is not None:
        for batch in (1, 4, 16, 32):
            report(f"image onnxruntime fp32 batch {batch}",
                   _rate(lambda: [image_runner.run(pixels=pixels[s:s + batch]) for s in range(0, n, batch)], n),
                   "images/s")

    # ---- decoding ----------------------------------------------------------------------
    def full_decode():
        for b in blobs:
            image_encoder.preprocess(decode_image(b, draft_size=None))

    def draft_decode():
        for b in blobs:
            image_encoder.preprocess(decode_image(b))

    def pil_open():
        for r in rows:
            with Image.open(r.image_path) as img:
                image_encoder.preprocess(img.convert("RGB"))

    report("decode+preprocess: PIL open, full size", _rate(pil_open, n), "images/s")
    report("decode+preprocess: decode_image full size", _rate(full_decode, n), "images/s")
    report("decode+preprocess: decode_image JPEG draft", _rate(draft_decode, n), "images/s")

    # ---- the batch path ----------------------------------------------------------------
    def pairs(**kwargs):
        encode_pairs(rows, text_encoder, image_encoder, FeatureStore(None), **kwargs)

    def serial_pairs():  # decode everything, then encode (no overlap)
        with ThreadPoolExecutor(1):
            text_encoder.encode(texts)
            images = [decode_image(b) for b in blobs]
            image_encoder.encode(images, batch_size=16)

    report("encode_pairs: decode then encode, no threads", _rate(serial_pairs, n, 1), "pairs/s")
    for workers, batch in ((1, 16), (2, 8), (2, 16), (2, 32)):
        report(f"encode_pairs: {workers} decode threads overlapped, image batch {batch}",
               _rate(lambda: pairs(workers=workers, image_batch=batch), n, 1), "pairs/s")

    # ---- heads and training threads ----------------------------------------------------
    t = torch.randn(SUBSET, text_encoder.dim)
    v = torch.randn(SUBSET, image_encoder.dim)
    threads = torch.get_num_threads()
    for k in sorted({1, threads}):
        torch.set_num_threads(k)
        with torch.inference_mode():
            report(f"heads on a chunk of {SUBSET}, {k} torch thread(s)",
                   _rate(lambda: [heads(t, v) for _ in range(20)], 20, 3), "chunks/s")
    torch.set_num_threads(threads)
    return out


def _int8_text_runner(text_encoder, cache_folder):
    """Dynamic int8 quantisation of the text graph's MatMuls (onnxruntime.quantization): off by default,
    measured here for speed (accuracy: see the README)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from core.encoders.onnx import OnnxRunner

        source = cache_folder(text_encoder.id, "text") / "model.onnx"
        target = source.with_name("model.int8.onnx")
        if not target.exists():
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return OnnxRunner(target)
    except Exception:
        return None
