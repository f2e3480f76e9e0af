"""Benchmark: scoring pairs/s on a GPU (fp32, then fp16 and bf16 autocast) against the CPU, in one run.

    python bench/gpu_check.py [--pairs 512] [--data DIR] [--make-pairs] [--json]

The same pairs (MVSA-Single dev then train rows from ``../shared/data/mvsa_single``, or ~600 px JPEG
pairs drawn here when that folder is absent or ``--make-pairs`` is given; never ``test.csv``), the
shipped head and the encoders its card names, ``core.scoring.batch.score_rows`` with a cold in-memory
feature store each time:

- ``cpu_pairs_per_s``          the default CPU path (fp32 ONNX Runtime text graph, int8 image graph);
- ``gpu_fp32_pairs_per_s``     encoders and heads on ``cuda`` in fp32 (TF32 off; the image encoder runs
                               the fp32 EfficientNet-Lite0 network, the int8 graph being a CPU optimisation);
- ``gpu_fp16_pairs_per_s`` / ``gpu_bf16_pairs_per_s``  the encoders under autocast, measured only when
                               the autocast check (``core.scoring.precision``) passes; its summary is printed;
- ratios against the CPU, and how far the GPU's predictions are from the CPU's on these pairs
  (share of equal fused predictions, largest fused probability difference).

Without a CUDA GPU (or with a CPU-only torch build) it measures the CPU figure, says that no GPU
figure was measured, and exits 0. A run on 512 pairs takes a minute or two on a GPU machine, most
of it loading models and the CPU pass. With ``--json`` the last line is one JSON object with the
figures and the ``machine`` block (``core.machine.machine_block()``, with its ``gpu`` entry).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_scoring import bench_pairs  # noqa: E402
from core import config  # noqa: E402
from core.machine import describe_machine, machine_block  # noqa: E402

WARMUP_PAIRS = 16  # scored once in a throwaway store before timing: ONNX export, cuDNN plans, CUDA context


def log(*parts) -> None:
    print(*parts, file=sys.stderr if ARGS.json else sys.stdout, flush=True)


def predictor_on(device: str, precision: str, encoders=None):
    """The shipped head on ``device`` with its encoders in ``precision`` (an empty in-memory store)."""
    from core.features.store import FeatureStore
    from core.registry import read_version_folder
    from core.scoring.predict import Predictor

    tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
    return Predictor.from_card(tensors, card, FeatureStore(None), encoders=encoders, device=device,
                               precision=precision)


def timed_pass(rows, predictor):
    """(pairs/s, scored frame) of ``score_rows`` over ``rows`` from a cold in-memory store."""
    from core.features.store import FeatureStore
    from core.scoring.batch import score_rows

    predictor.store = FeatureStore(None)
    score_rows(rows[:WARMUP_PAIRS], predictor)
    predictor.store = FeatureStore(None)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = score_rows(rows, predictor)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    if not result.finished or (result.frame["status"] == "error").any():
        raise RuntimeError(f"scoring failed: {result.failure}")
    return round(len(rows) / elapsed, 1), result.frame


def agreement(frame, reference) -> dict:
    """Share of equal fused predictions and the largest fused probability difference between two runs."""
    cols = [c for c in frame.columns if c.startswith("p_fused_")]
    diff = np.abs(frame[cols].to_numpy(float) - reference[cols].to_numpy(float))
    return {"same_prediction": round(float((frame["prediction"] == reference["prediction"]).mean()), 4),
            "max_prob_diff": round(float(np.nanmax(diff)), 4)}


def main(argv=None) -> dict:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--data", default=str(config.mvsa_dir()))
    parser.add_argument("--make-pairs", action="store_true", help="draw pairs even when MVSA-Single is there")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line, last")
    ARGS = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows, source = bench_pairs(ARGS.pairs, Path(ARGS.data), ARGS.make_pairs, scratch)
    log(f"pairs: {source} ({len(rows)} usable)")
    figures: dict = {"pairs": len(rows)}

    cpu = predictor_on("cpu", "fp32")
    figures["cpu_pairs_per_s"], cpu_frame = timed_pass(rows, cpu)
    log(f"CPU  fp32 (int8 image graph): {figures['cpu_pairs_per_s']:8.1f} pairs/s")

    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "torch sees no CUDA GPU on this machine")
        figures["gpu"] = None
        log(f"no GPU figure measured: {why} (torch {torch.__version__}). Run this script on a machine with "
            f"a CUDA GPU and a CUDA build of torch for the GPU figures.")
    else:
        gpu = predictor_on("cuda", "fp32")
        figures["gpu_fp32_pairs_per_s"], fp32_frame = timed_pass(rows, gpu)
        figures["gpu_fp32_vs_cpu"] = agreement(fp32_frame, cpu_frame)
        log(f"GPU  fp32:                    {figures['gpu_fp32_pairs_per_s']:8.1f} pairs/s "
            f"({figures['gpu_fp32_pairs_per_s'] / figures['cpu_pairs_per_s']:.2f}x CPU); "
            f"fused predictions equal to the CPU's: {figures['gpu_fp32_vs_cpu']['same_prediction']:.2%}")
        encoders = (gpu.text_encoder, gpu.image_encoder)
        for name in ("fp16", "bf16"):
            if name == "bf16" and not torch.cuda.is_bf16_supported():
                log("GPU  bf16: not supported by this GPU")
                continue
            auto = predictor_on("cuda", name, encoders=encoders)
            check = auto.precision_check
            figures[f"{name}_check"] = check.as_dict()
            log(f"     {check.summary()}")
            if not check.passed:
                continue
            figures[f"gpu_{name}_pairs_per_s"], frame = timed_pass(rows, auto)
            figures[f"gpu_{name}_vs_cpu"] = agreement(frame, cpu_frame)
            log(f"GPU  {name} autocast:           {figures[f'gpu_{name}_pairs_per_s']:8.1f} pairs/s "
                f"({figures[f'gpu_{name}_pairs_per_s'] / figures['cpu_pairs_per_s']:.2f}x CPU, "
                f"{figures[f'gpu_{name}_pairs_per_s'] / figures['gpu_fp32_pairs_per_s']:.2f}x GPU fp32)")
        for encoder in encoders:
            encoder.set_autocast(None)
        from core.device import describe_device
        figures["gpu"] = describe_device(torch.device("cuda"))

    figures["machine"] = machine_block()
    log(f"measured on: {describe_machine(figures['machine'])}")
    if ARGS.json:
        print(json.dumps(figures))
    return figures


ARGS = argparse.Namespace(json=False)

if __name__ == "__main__":
    main()
