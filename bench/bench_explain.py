"""Benchmark: how long one explanation takes (word attributions + image saliency) with the shipped
head and its encoders on CPU.

    python bench/bench_explain.py [--n N] [--json]

Uses the first N MVSA-Single dev pairs when ``../shared/data`` is present, else pairs drawn
here (a ~600 px JPEG and a 20-word text). The last line with ``--json`` is
``{"explain_ms_p50": ..., "explain_ms_p95": ..., "n": ...}``.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import config  # noqa: E402


def sample_pairs(n: int) -> list[tuple[str, bytes]]:
    dev = config.mvsa_dir() / "dev.csv"
    if dev.exists():
        import pandas as pd

        frame = pd.read_csv(dev, dtype=str, keep_default_na=False).head(n)
        return [(row.text, (config.mvsa_dir() / "images" / row.image).read_bytes()) for row in frame.itertuples()]
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    pairs = []
    for k in range(n):
        image = Image.new("RGB", (600, 450), (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
        ImageDraw.Draw(image).ellipse([100, 80, 400, 300], fill=(250, 220, 40))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG")
        words = ["what", "a", "lovely", "sunny", "day", "at", "the", "beach", "with", "friends", "and", "cold",
                 "drinks", "but", "the", "traffic", "home", "was", "terrible", "again"]
        pairs.append((" ".join(words), buffer.getvalue()))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from core.features.store import FeatureStore
    from core.scoring.explain import explain_pair
    from core.scoring.predict import load_default_predictor

    predictor = load_default_predictor(store=FeatureStore(None), head_path=config.DEFAULT_HEAD_DIR)
    pairs = sample_pairs(args.n)
    explain_pair(predictor, *pairs[0])  # warm-up: first call builds graphs and caches
    times = []
    for text, image in pairs:
        started = time.perf_counter()
        explain_pair(predictor, text, image)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    result = {"explain_ms_p50": round(statistics.median(times), 1), "explain_ms_p95": round(p95, 1), "n": len(times)}
    print(f"explain_pair on {len(times)} pairs: p50 {result['explain_ms_p50']} ms, p95 {result['explain_ms_p95']} ms")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
