"""Benchmark: how fast the project scores pairs on this machine, against a hand-written per-pair loop.

    python bench/bench_scoring.py [--n N] [--json] [--data DIR] [--make-pairs] [--levers]

One run, the same N pairs (default 256 from ``../shared/data/mvsa_single``, or pairs drawn here when
that folder is absent or ``--make-pairs`` is given), on CPU, the default pipeline: the shipped head
(``assets/models/default``) and the encoders its card names (MiniLM-L6 + the MVSA LoRA adapter,
EfficientNet-Lite0):

- ``naive_pairs_per_s``   a plain per-pair loop with the PyTorch encoders: open the image with PIL
                          (full decode), preprocess, encode one text, encode one image, run the heads
                          (the faster of the process's torch threads and all the cores);
- ``pairs_per_s``         ``core.scoring.batch.score_rows`` with a cold (empty) feature store;
- ``speedup``             pairs_per_s / naive_pairs_per_s;
- ``cached_speedup``      cold pass time / time to score the same pairs again (warm store);
- ``single_pair_ms_p50`` / ``_p95``  ``Predictor.predict_pair`` (the explorer's path), warm model, pairs
                          not in the store;
- ``train_s``             ``core.heads.training.train_heads`` for exactly 30 epochs on 3,611 cached pairs (MVSA
                          train features from the user's feature store when all are there, else random
                          features of the right shape);
- ``peak_rss_mb``         peak resident memory of this process.

With ``--json`` the last line printed is one JSON object with exactly those keys plus ``machine``, the
machine they were measured on (``core.machine.machine_block()``: CPU model, int8/float instruction-set
flags, cores, library versions, a one-second fp32 matmul GFLOP/s); without it the figures are
followed by a "measured on" line. ``--levers`` first
prints side-by-side measurements of the levers the README's table reports (slow: a few minutes).
The models are loaded and the ONNX graphs built before anything is timed (a first use on a new
machine pays the export once, a few seconds; it is printed, not counted).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import config  # noqa: E402
from core.encoders.onnx import cpu_threads  # noqa: E402
from core.machine import describe_machine, machine_block  # noqa: E402

KEYS = ("naive_pairs_per_s", "pairs_per_s", "speedup", "cached_speedup", "single_pair_ms_p50",
        "single_pair_ms_p95", "train_s", "peak_rss_mb")
TRAIN_PAIRS = 3611
TRAIN_EPOCHS = 30


def log(*parts) -> None:
    print(*parts, file=sys.stderr if ARGS.json else sys.stdout, flush=True)


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------
WORDS = ("happy sad great awful sunny rain love hate best worst concert traffic dinner puppy work "
         "morning night city beach game win lose friends family coffee train late early").split()


def make_pairs(folder: Path, n: int, seed: int = 0):
    """n text + JPEG pairs like tweets with a phone picture (~600 px JPEGs, short texts)."""
    import pandas as pd
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        size = rng.choice([(600, 450), (450, 600), (600, 600), (600, 337)])
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            draw.ellipse([x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)],
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        image.save(images / f"{k}.jpg", quality=85)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 24)))
        rows.append({"id": k, "text": f"{text} #{k}", "image": f"{k}.jpg",
                     "label": rng.choice(["negative", "neutral", "positive"])})
    return pd.DataFrame(rows), images


def bench_pairs(n: int, data: Path, make: bool, scratch: Path):
    """(prepared rows, label) of n pairs: MVSA dev then train rows (never test.csv: it is kept for the
    final accuracy figures, and a fallback head is trained on these pairs), else made pairs."""
    import pandas as pd

    from core.io.tables import prepare_pairs

    if not make and (data / "dev.csv").exists():
        frame = pd.concat([pd.read_csv(data / f"{split}.csv") for split in ("dev", "train")
                           if (data / f"{split}.csv").exists()], ignore_index=True).head(n)
        images, source = data / "images", f"{len(frame)} pairs from {data}"
    else:
        frame, images = make_pairs(scratch / "pairs", n)
        source = f"{n} pairs drawn here (~600 px JPEGs)"
    frame = frame.reset_index(drop=True)
    rows = prepare_pairs(frame, label_column="label", images_root=images)
    return [r for r in rows if r.error is None], source


# --------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------
def load_encoders_and_heads(rows):
    """The real default pipeline: the shipped head (``config.DEFAULT_HEAD_DIR``) and the encoders its
    card names (MiniLM with the MVSA LoRA adapter merged, EfficientNet-Lite0), loaded the way
    ``core.scoring.predict.load_default_predictor(head_path=DEFAULT_HEAD_DIR)`` loads them. Only when there is
    no usable shipped head: the plain default encoders and a quick head trained on the bench pairs (in
    a throwaway store, so the timed passes below still start cold)."""
    from core.encoders import load_image_encoder, load_text_encoder
    from core.scoring.predict import check_card_matches, heads_from_card, load_encoders_for_card

    if (config.DEFAULT_HEAD_DIR / "card.json").exists():
        from core.registry import read_version_folder
        try:
            tensors, card = read_version_folder(config.DEFAULT_HEAD_DIR)
            text_encoder, image_encoder = load_encoders_for_card(card)
            check_card_matches(card, text_encoder, image_encoder)
            return text_encoder, image_encoder, heads_from_card(tensors, card), card, "shipped default head"
        except Exception as exc:
            log(f"shipped head unusable here ({type(exc).__name__}: {exc}); training a quick one")
    from core.features.pipeline import encode_pairs
    from core.features.sets import FeatureSet
    from core.features.store import FeatureStore
    from core.heads.training import TrainConfig, train_heads
    from core.io.labels import LABEL_TO_INDEX, LABELS

    text_encoder, image_encoder = load_text_encoder(), load_image_encoder()
    encoded = encode_pairs(rows, text_encoder, image_encoder, FeatureStore(None))
    labels = np.array([LABEL_TO_INDEX[r.label] for r in rows], dtype=np.int64)
    data = FeatureSet(encoded.text, encoded.image, labels)
    heads = train_heads(data, data, TrainConfig(max_epochs=5, patience=5)).model
    card = {"labels": list(LABELS), "text_encoder": text_encoder.info.as_dict(),
            "image_encoder": image_encoder.info.as_dict(), "hidden": heads.config.hidden, "dropout": heads.config.dropout}
    return text_encoder, image_encoder, heads, card, "quick head trained on the bench pairs"


# --------------------------------------------------------------------------------------------
# The measurements
# --------------------------------------------------------------------------------------------
@torch.inference_mode()
def naive_loop(rows, text_encoder, image_encoder, heads) -> float:
    """What a user writes by hand with the PyTorch encoders: one pair at a time. Returns seconds."""
    from PIL import Image

    started = time.perf_counter()
    for row in rows:
        with Image.open(row.image_path) as img:
            img = img.convert("RGB")  # full-size decode
        pixels = image_encoder.preprocess(img).unsqueeze(0)
        tokens = text_encoder.tokenize([row.text])
        text_vec = text_encoder.forward_features(tokens["input_ids"], tokens["attention_mask"])
        image_vec = image_encoder.forward_features(pixels)
        logits = heads(text_vec, image_vec)
        {name: torch.softmax(value, -1) for name, value in logits.items()}
    return time.perf_counter() - started


def batch_pass(rows, predictor) -> float:
    from core.scoring.batch import score_rows

    started = time.perf_counter()
    result = score_rows(rows, predictor)
    elapsed = time.perf_counter() - started
    if not result.finished or (result.frame["status"] == "error").any():
        bad = result.frame.loc[result.frame["status"] == "error", "message"].head(3).tolist()
        raise RuntimeError(f"batch scoring failed: {result.failure} {bad}")
    return elapsed


def single_pairs(rows, predictor, count: int) -> list[float]:
    """predict_pair on pairs this predictor's store has not seen (text + image bytes, as uploaded)."""
    times = []
    for row in rows[:count]:
        blob = Path(row.image_path).read_bytes()
        started = time.perf_counter()
        predictor.predict_pair(row.text, blob)
        times.append((time.perf_counter() - started) * 1000)
    return times


def train_features(text_encoder, image_encoder):
    """3,611 training pairs + a dev set: MVSA's from the user's feature store if all are cached, else
    random features of the right shape (the timing depends on the shapes, not the values)."""
    from core.features.sets import FeatureSet

    cached = _cached_mvsa(text_encoder, image_encoder)
    if cached is not None:
        return cached + ("MVSA train features from the feature store",)
    rng = np.random.default_rng(0)

    def fake(n):
        return FeatureSet(rng.standard_normal((n, text_encoder.dim), dtype=np.float32),
                          rng.standard_normal((n, image_encoder.dim), dtype=np.float32),
                          rng.integers(0, 3, n))
    return fake(TRAIN_PAIRS), fake(450), "random features of the right shape (MVSA not cached)"


def _cached_mvsa(text_encoder, image_encoder):
    import pandas as pd

    from core.features.sets import FeatureSet
    from core.features.store import FeatureStore, content_key
    from core.io.labels import LABEL_TO_INDEX, normalise_label

    folder, store_path = config.mvsa_dir(), config.feature_store_path()
    if not (folder / "train.csv").exists() or not store_path.exists():
        return None
    store = FeatureStore(store_path)
    sets = []
    try:
        for split, want in (("train", TRAIN_PAIRS), ("dev", None)):
            frame = pd.read_csv(folder / f"{split}.csv")
            text_keys = [content_key(str(t).strip()) for t in frame["text"]]
            image_keys = []
            for name in frame["image"]:
                path = folder / "images" / str(name)
                image_keys.append(content_key(path.read_bytes()) if path.exists() else "")
            texts = store.get_many(text_encoder.feature_key, text_keys)
            images = store.get_many(image_encoder.feature_key, image_keys)
            keep = [i for i in range(len(frame)) if text_keys[i] in texts and image_keys[i] in images]
            if want is not None and len(keep) < want:
                return None
            keep = keep[:want] if want else keep
            sets.append(FeatureSet(np.stack([texts[text_keys[i]] for i in keep]),
                                   np.stack([images[image_keys[i]] for i in keep]),
                                   np.array([LABEL_TO_INDEX[normalise_label(frame["label"][i])] for i in keep])))
    except Exception:
        return None
    finally:
        store.close()
    return sets[0], sets[1]


def time_training(train, dev) -> float:
    from core.heads.training import TrainConfig, train_heads

    started = time.perf_counter()
    result = train_heads(train, dev, TrainConfig(max_epochs=TRAIN_EPOCHS, patience=10**6))
    elapsed = time.perf_counter() - started
    assert len(result.history) == TRAIN_EPOCHS and len(train) == TRAIN_PAIRS
    return elapsed


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def run(args) -> dict:
    from core.features.store import FeatureStore
    from core.scoring.predict import Predictor
    from core.threads import start_torch_threads

    threads = start_torch_threads()  # as the app and the command line start (core/threads.py)
    log(f"machine: {cpu_threads()} CPU threads, torch {torch.__version__} ({threads} thread(s), set at start)")
    with tempfile.TemporaryDirectory(prefix="mmsa-bench-") as scratch:
        scratch = Path(scratch)
        rows, source = bench_pairs(args.n, Path(args.data), args.make_pairs, scratch)
        log(f"pairs: {source}")

        started = time.perf_counter()
        text_encoder, image_encoder, heads, card, head_source = load_encoders_and_heads(rows)
        heads.eval()
        log(f"encoders loaded in {time.perf_counter() - started:.1f} s: text {text_encoder.describe()}, "
            f"image {image_encoder.describe()} (peak RSS {peak_rss_mb():.0f} MB)")
        started = time.perf_counter()
        text_encoder.onnx_runner(), image_encoder.onnx_runner()  # export on first use (not timed)
        log(f"runtime: text {text_encoder.runtime}, image {image_encoder.runtime} "
            f"(graphs ready in {time.perf_counter() - started:.1f} s)")
        log(f"heads: {head_source}")

        if args.levers:
            from bench.levers import run_levers
            run_levers(rows, text_encoder, image_encoder, heads, card, log)

        # Warm-up: first calls allocate buffers; both paths get one (the timed passes use fresh stores).
        warm = rows[:4]
        naive_loop(warm, text_encoder, image_encoder, heads)
        Predictor(text_encoder, image_encoder, heads, card, FeatureStore(None)).predict_pair(warm[0].text, Path(warm[0].image_path).read_bytes())

        # The naive loop gets its better torch thread setting, the process's or all the cores (its
        # PyTorch encoders may gain from a pool on a quiet machine): the baseline must not be slowed by ours.
        naive_s = naive_loop(rows, text_encoder, image_encoder, heads)
        if cpu_threads() > threads:
            torch.set_num_threads(cpu_threads())
            wide_s = naive_loop(rows, text_encoder, image_encoder, heads)
            torch.set_num_threads(threads)  # back to the process's setting before anything else is timed
            log(f"naive loop: {len(rows) / naive_s:.1f} pairs/s with {threads} torch thread(s), "
                f"{len(rows) / wide_s:.1f} with {cpu_threads()}")
            naive_s = min(naive_s, wide_s)
        predictor = Predictor(text_encoder, image_encoder, heads, card, FeatureStore(scratch / "cold.sqlite"))
        cold_s = batch_pass(rows, predictor)
        warm_s = batch_pass(rows, predictor)
        log(f"peak RSS after naive + batch passes: {peak_rss_mb():.0f} MB")
        single = single_pairs(rows, Predictor(text_encoder, image_encoder, heads, card, FeatureStore(None)),
                              min(len(rows), 64))
        train, dev, train_source = train_features(text_encoder, image_encoder)
        log(f"training: {len(train)} pairs, {train_source}")
        train_s = time_training(train, dev)

    n = len(rows)
    result = {
        "naive_pairs_per_s": round(n / naive_s, 2),
        "pairs_per_s": round(n / cold_s, 2),
        "speedup": round(naive_s / cold_s, 2),
        "cached_speedup": round(cold_s / warm_s, 1),
        "single_pair_ms_p50": round(statistics.median(single), 1),
        "single_pair_ms_p95": round(float(np.percentile(single, 95)), 1),
        "train_s": round(train_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    log(f"{n} pairs: naive {naive_s:.2f} s, batch cold {cold_s:.2f} s, batch warm {warm_s * 1000:.0f} ms")
    return result


def main(argv=None) -> dict:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="pairs to score (default 256)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line, last")
    parser.add_argument("--data", default=str(config.mvsa_dir()), help="folder with dev.csv / train.csv + images/")
    parser.add_argument("--make-pairs", action="store_true", help="draw pairs here even if MVSA is present")
    parser.add_argument("--levers", action="store_true", help="also measure the levers (slow)")
    ARGS = parser.parse_args(argv)
    result = run(ARGS)
    assert tuple(result) == KEYS
    machine = machine_block()
    if ARGS.json:
        print(json.dumps({**result, "machine": machine}), flush=True)
    else:
        width = max(map(len, KEYS))
        for key in KEYS:
            print(f"{key:<{width}}  {result[key]}")
        print(f"measured on: {describe_machine(machine)}")
    return result


ARGS = argparse.Namespace(json=False)

if __name__ == "__main__":
    main()
