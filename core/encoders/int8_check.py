"""Does the int8 image graph give this CPU the numbers it was built for? Checked once per machine.

Why: ONNX Runtime picks its int8 kernels by CPU. On x86 CPUs without VNNI (AVX2 or AVX-512 alone,
common in laptops and servers) the u8 × s8 kernel adds pairs of products in 16 bits and saturates
when both products are large, so a graph built with full 8-bit weights can give features far from
the fp32 network's (cosine 0.34 on some photos) while a VNNI CPU gives 0.97+. The shipped graph is
built with 7-bit weights (``core.encoders.quantize``), which cannot saturate, and gives bit-identical
features on both kinds of CPU; this check makes sure of it on the machine at hand, and anything it
does not cover (a new ONNX Runtime, an ARM CPU, a rebuilt graph) is caught the same way.

How: the shipped reference photographs (``REFERENCE_DIR``) go through the int8 graph and through
the fp32 network; the check passes when the median cosine between the two is at least
``MIN_MEDIAN_COSINE`` and none is below ``MIN_COSINE``. The result is cached in
``$MMSA_HOME/int8-check.json`` under a key made of the graph's hash, the CPU's model and flags and
the ONNX Runtime version, so it runs once per machine. Where it fails, the encoder serves the fp32
network instead (``core.encoders.EfficientNetLite0Int8Encoder``) and says so everywhere the encoder is
shown: never silently wrong numbers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core import config
from core.checks_cache import remembered_check

REFERENCE_DIR = config.INT8_IMAGE_GRAPH_DIR / "reference"
# The shipped graph gives median 0.98, min 0.96 on the reference photos, identically with and without
# VNNI; the same network with 8-bit weights gives 0.94 / 0.74 on an AVX2-only CPU (its brightened
# photos drift most), which must fail.
MIN_MEDIAN_COSINE = 0.95
MIN_COSINE = 0.90
CACHE_NAME = "int8-check.json"
CHECK_VERSION = 1  # bump when the rule or the reference pictures change: cached results are ignored


@dataclass(frozen=True)
class Int8Check:
    """Outcome of the check on this machine."""

    passed: bool
    median_cosine: float
    min_cosine: float
    n_pictures: int
    cpu: str
    checked_at: str

    def summary(self) -> str:
        """One line for reports: passed or failed, on which CPU, median and minimum cosine."""
        verdict = "passed" if self.passed else "FAILED"
        return (f"int8 check {verdict} on this CPU ({self.cpu}): cosine to the fp32 network median "
                f"{self.median_cosine:.3f}, min {self.min_cosine:.3f} on {self.n_pictures} reference photos")

    def as_dict(self) -> dict:
        """The check's fields as a plain dict (for JSON)."""
        return asdict(self)


def reference_pictures() -> list[Path]:
    """The shipped reference photographs (JPEG), sorted by name."""
    return sorted(REFERENCE_DIR.glob("*.jpg"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) matrices."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(min=1e-12)


def _cpu_identity() -> dict:
    from core.machine import machine_block

    block = machine_block(measure=False)
    return {"cpu_model": block["cpu_model"], "arch": block["arch"], "flags": block["flags"],
            "onnxruntime": block["onnxruntime"]}


def _cache_key(encoder_id: str) -> str:
    # The encoder id already carries the graph's hash: the file is not read and hashed a second time.
    identity = json.dumps({"graph": encoder_id, "cpu": _cpu_identity(), "version": CHECK_VERSION},
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def run_int8_check(encoder, pictures: list[Path] | None = None) -> Int8Check:
    """Compare ``encoder``'s int8 graph with its fp32 twin (``encoder.model``) on ``pictures`` (default:
    the shipped reference photos), decoded and preprocessed as the encoder does at inference.
    Returns the outcome; does not read or write the cache."""
    import torch

    pictures = pictures if pictures is not None else reference_pictures()
    if not pictures:
        raise FileNotFoundError(f"no reference pictures in {REFERENCE_DIR}")
    pixels = torch.stack([encoder.preprocess(encoder.decode(Path(p).read_bytes())) for p in pictures])
    int8 = encoder.int8_runner().run(pixels=pixels)
    with torch.inference_mode():
        fp32 = encoder.forward_features(pixels.to(encoder.device)).float().cpu().numpy()
    cos = cosines(int8, fp32)
    identity = _cpu_identity()
    median, low = float(np.median(cos)), float(cos.min())
    return Int8Check(passed=bool(median >= MIN_MEDIAN_COSINE and low >= MIN_COSINE),
                     median_cosine=round(median, 4), min_cosine=round(low, 4), n_pictures=len(pictures),
                     cpu=identity["cpu_model"], checked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def cached_int8_check(encoder) -> Int8Check:
    """The check for this graph on this CPU: from ``$MMSA_HOME/int8-check.json`` when it ran before,
    else run now and remember it (a cache that cannot be written only means the check runs again)."""
    return remembered_check(CACHE_NAME, _cache_key(encoder.id), lambda: run_int8_check(encoder), Int8Check)


def make_reference_pictures(out_dir: Path = REFERENCE_DIR) -> list[Path]:
    """Write the reference photographs: crops of the two photos scikit-learn ships (CC BY 2.0, see
    ``README.txt`` in the folder), as small JPEGs, plus bright, white-framed and captioned versions:
    posts are full of those, and large bright areas with hard edges are where a saturating int8
    kernel drifts most. Deterministic; run again only to change the set."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFont
    from sklearn.datasets import load_sample_image

    def crop(source: str, box: tuple[int, int, int, int]) -> Image.Image:
        picture = Image.fromarray(load_sample_image(source)).crop(box)
        scale = 256 / min(picture.size)  # tweet-photo scale: decoded in draft mode like the real ones
        return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)

    def bright(picture: Image.Image) -> Image.Image:
        return ImageEnhance.Contrast(ImageEnhance.Brightness(picture).enhance(1.7)).enhance(1.4)

    def framed(picture: Image.Image, caption: str) -> Image.Image:
        canvas = Image.new("RGB", (320, 320), "white")
        small = picture.copy()
        small.thumbnail((200, 200))
        canvas.paste(small, ((320 - small.width) // 2, 30))
        font = ImageFont.load_default(size=34)
        ImageDraw.Draw(canvas).text((160, 280), caption, fill="black", font=font, anchor="mm")
        return canvas

    temple, flower = crop("china.jpg", (0, 0, 427, 427)), crop("flower.jpg", (213, 0, 640, 427))
    pictures = {  # name → picture: different subjects, scales, textures and exposures
        "temple-left": temple,
        "temple-right": crop("china.jpg", (213, 0, 640, 427)),
        "temple-roof": crop("china.jpg", (160, 20, 400, 260)),
        "temple-trees": crop("china.jpg", (0, 230, 300, 427)),
        "flower-left": crop("flower.jpg", (0, 0, 427, 427)),
        "flower-right": flower,
        "flower-centre": crop("flower.jpg", (200, 80, 460, 340)),
        "flower-whole": crop("flower.jpg", (0, 0, 640, 427)),
        "temple-bright": bright(temple),
        "flower-bright": bright(flower),
        "temple-poster": framed(temple, "GREAT DAY!"),
        "flower-poster": framed(flower, "so sad :("),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, picture in pictures.items():
        path = out_dir / f"{name}.jpg"
        picture.save(path, format="JPEG", quality=90)
        written.append(path)
    return written
