"""Which int8 EfficientNet-Lite0 graph gives the fp32 network's features on every x86 CPU?

    python bench/int8_parity.py [--n 64] [--variants shipped,full8,u8,per-tensor,qoperator] [--emulate-avx2]

Builds each variant from the same 512 MVSA train calibration pictures (``core.encoders.quantize``; cached in
``$MMSA_HOME/int8-variants/``), then measures, on ``n`` MVSA dev photos and on the shipped reference
photos (``core.encoders.int8_check``), the cosine of each picture's int8 vector to the fp32 network's (median,
min) and the int8 graph's time per image (batch 16, best of 4 rounds, this machine's cores).

CPUs differ: without VNNI, ONNX Runtime's u8 × s8 kernel saturates 16-bit pair sums, so a graph can
be right on one machine and wrong on the next. ``--emulate-avx2`` re-runs the parity part under
``qemu-x86_64 -cpu Haswell`` (Debian's ``qemu-user``: an AVX2-only CPU without AVX-512 or VNNI,
emulated, so its timings mean nothing and are not taken) and reports whether each variant's
features are identical there. Prints a table, then one JSON line with a ``machine`` block.
test.csv is never read.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = {  # name → options for core.encoders.quantize.build_int8_image_graph (missing keys: the shipped ones)
    "shipped": {},
    "full8": {"reduce_range": False},
    "u8": {"reduce_range": False, "weight_type": "QUInt8"},
    "per-tensor": {"reduce_range": False, "per_channel": False},
    "qoperator": {"quant_format": "QOperator"},
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # core.encoders.int8_check.cosines, restated: the emulated worker imports onnxruntime and numpy
    # only (importing core.encoders brings in torch, minutes under emulation).
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(min=1e-12)


def run_graphs(work: Path, names: list[str], timed: bool) -> dict:
    """Parity (and speed) of each variant's graph on the prepared pixels. Needs only onnxruntime and
    numpy, so it also runs under an emulated CPU."""
    import onnxruntime as ort

    data = np.load(work / "pixels.npz")
    out = {}
    for name in names:
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        session = ort.InferenceSession(str(work / name / "model.onnx"), options, providers=["CPUExecutionProvider"])
        row = {}
        for part in ("dev", "reference"):
            pixels = data[f"{part}_pixels"]
            feats = np.concatenate([session.run(None, {"pixels": pixels[i:i + 16]})[0]
                                    for i in range(0, len(pixels), 16)])
            np.save(work / name / f"{part}_features.npy", feats)
            cos = cosines(feats, data[f"{part}_fp32"])
            row[part] = {"median": round(float(np.median(cos)), 4), "min": round(float(cos.min()), 4)}
        if timed:
            batch = data["dev_pixels"][:16]
            session.run(None, {"pixels": batch})
            rounds = []
            for _ in range(4):
                started = time.perf_counter()
                for _ in range(3):
                    session.run(None, {"pixels": batch})
                rounds.append((time.perf_counter() - started) / (3 * len(batch)))
            row["ms_per_image"] = round(1000 * min(rounds), 2)
        out[name] = row
    return out


def prepare(work: Path, names: list[str], n: int) -> None:
    import pandas as pd
    import torch

    from core import config
    from core.encoders import EfficientNetLite0Encoder
    from core.encoders.int8_check import reference_pictures
    from core.encoders.quantize import build_int8_image_graph, calibration_files, calibration_pixels

    data = config.mvsa_dir()
    if not (data / "dev.csv").exists():
        raise SystemExit(f"MVSA-Single not found in {data} (set MMSA_MVSA_DIR)")
    calibration = calibration_files(data / "train.csv", data / "images", n=512)
    for name in names:
        if not (work / name / "model.onnx").exists():
            print(f"building {name} {VARIANTS[name]} …", file=sys.stderr, flush=True)
            build_int8_image_graph(calibration, work / name, source="first 512 pictures of train.csv",
                                   options=VARIANTS[name])
    fp32 = EfficientNetLite0Encoder()
    dev = [data / "images" / name for name in pd.read_csv(data / "dev.csv")["image"][:n]]
    arrays = {}
    for part, files in (("dev", dev), ("reference", reference_pictures())):
        pixels = calibration_pixels(fp32, files)
        with torch.inference_mode():
            arrays[f"{part}_fp32"] = fp32.forward_features(torch.from_numpy(pixels)).numpy()
        arrays[f"{part}_pixels"] = pixels
    np.savez(work / "pixels.npz", **arrays)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="MVSA dev photos")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--emulate-avx2", action="store_true", help="also measure parity under qemu -cpu Haswell")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the emulated half
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    if args.worker:
        print(json.dumps(run_graphs(Path(args.worker), names, timed=False)))
        return {}

    from core import config
    from core.machine import machine_block

    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    work = config.home_dir() / "int8-variants"
    prepare(work, names, args.n)
    result = {"n_dev_photos": args.n, "variants": {n: {"options": VARIANTS[n], **r}
                                                   for n, r in run_graphs(work, names, timed=True).items()}}
    if args.emulate_avx2:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise SystemExit("--emulate-avx2 needs qemu-user (apt-get install qemu-user)")
        native = {name: {part: np.load(work / name / f"{part}_features.npy") for part in ("dev", "reference")}
                  for name in names}
        emulated = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, __file__, "--worker", str(work),
                                   "--variants", ",".join(names)], capture_output=True, text=True, check=True)
        parity = json.loads(emulated.stdout.strip().splitlines()[-1])
        for name in names:
            row = result["variants"][name]
            row["avx2_emulated"] = parity[name]
            # The worker wrote the emulated CPU's vectors over the native ones: are they the same bits?
            row["identical_on_avx2"] = all(np.array_equal(vectors, np.load(work / name / f"{part}_features.npy"))
                                           for part, vectors in native[name].items())
    result["machine"] = machine_block()
    print(f"{'variant':12} {'dev median/min':>16} {'reference median/min':>22} {'ms/image':>9}"
          + ("   AVX2 (emulated) dev / reference" if args.emulate_avx2 else ""))
    for name, row in result["variants"].items():
        line = (f"{name:12} {row['dev']['median']:>8.3f}/{row['dev']['min']:.3f} "
                f"{row['reference']['median']:>14.3f}/{row['reference']['min']:.3f} {row['ms_per_image']:>9.2f}")
        if "avx2_emulated" in row:
            e = row["avx2_emulated"]
            line += (f"   {e['dev']['median']:.3f}/{e['dev']['min']:.3f} / "
                     f"{e['reference']['median']:.3f}/{e['reference']['min']:.3f}"
                     + ("   identical" if row["identical_on_avx2"] else "   differs"))
        print(line)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
