"""Regenerate the example pairs shipped with the app: ``python assets/examples/make_examples.py``.

Every pair is made here, by this script: short texts written for the project and pictures drawn with
Pillow, except the two conflict pairs, whose pictures are made from scikit-learn's sample photographs
(CC BY 2.0, credited in README.txt); nothing is copied from a data set. They serve two jobs:
- the "Try an example" buttons on the explorer page, including two pairs where text and picture
  disagree, so the modality-conflict notice can be seen without hunting for one;
- a small labelled reference set for the correction page when MVSA-Single is not on the machine.

Output: ``examples.csv`` (id, text, image, label, note) and ``images/*.png`` beside this script. The
drawing is seeded, so running it twice gives the same files.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = (160, 120)

# (id, text, scene, label, note). The label is the pair's sentiment as a person would read it.
PAIRS = [
    ("sunny-picnic", "What a gorgeous day for a picnic, loving this sunshine!", "sunny", "positive", ""),
    ("birthday", "Best birthday ever, thank you all so much", "party", "positive", ""),
    ("beach-trip", "Finally on holiday, the beach is perfect", "sunny", "positive", ""),
    ("new-puppy", "So happy with our new puppy, she is adorable", "party", "positive", ""),
    ("concert", "Amazing concert tonight, what a great crowd", "party", "positive", ""),
    ("garden", "My tomatoes finally came up, so proud of this garden", "sunny", "positive", ""),
    ("storm", "Flooded street again, our car is ruined. Awful.", "storm", "negative", ""),
    ("delayed-train", "Stuck on a delayed train for two hours, I hate this", "night", "negative", ""),
    ("broken-phone", "Dropped my phone and the screen is smashed, terrible day", "storm", "negative", ""),
    ("cold-rain", "Cold, grey and miserable. Everything went wrong today", "storm", "negative", ""),
    ("power-cut", "Power cut in the whole block, no heating, so angry", "night", "negative", ""),
    ("lost-keys", "Lost my keys and missed the last bus. Worst night.", "night", "negative", ""),
    ("bus-timetable", "New bus timetable for route 12 starts on Monday", "office", "neutral", ""),
    ("meeting", "The team meeting moved to room 4B at 3pm", "office", "neutral", ""),
    ("scanned-form", "Scanned copy of the form, page two of three", "paper", "neutral", ""),
    ("parking", "Parking on level 2 is closed for cleaning this week", "office", "neutral", ""),
    ("shopping-list", "Shopping list: rice, eggs, milk and tea", "paper", "neutral", ""),
    ("library-hours", "Library opening hours for the holiday period", "paper", "neutral", ""),
    # Text and picture disagree on purpose: the explorer's conflict notice is meant for these.
    # Their pictures are photographs (scikit-learn's two sample photos, CC BY 2.0, see README.txt): the
    # shipped image head reads real photos, not drawings, with the confidence a conflict needs (≥ 50 %).
    ("conflict-happy-text", "Best day of my life, everything is wonderful!", "photo-rainy-temple", "positive",
     "cheerful words over a dark, rainy photo"),
    ("conflict-sad-text", "I am so sad and angry, this is a disaster", "photo-flowers", "negative",
     "bitter words over a bright photo of flowers"),
]


def jitter(colour, rng, amount=18):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)


def photo_scene(scene: str) -> Image.Image:
    """A picture made from one of scikit-learn's sample photographs."""
    from PIL import ImageEnhance, ImageFilter
    from sklearn.datasets import load_sample_image

    if scene == "photo-flowers":
        return Image.fromarray(load_sample_image("flower.jpg")).crop((200, 80, 460, 340)).resize((256, 256))
    if scene == "photo-rainy-temple":  # dimmed, washed out, blurred, with rain streaks
        photo = Image.fromarray(load_sample_image("china.jpg"))
        photo = ImageEnhance.Brightness(ImageEnhance.Color(photo).enhance(0.1)).enhance(0.45)
        photo = photo.filter(ImageFilter.GaussianBlur(3))
        draw, rng = ImageDraw.Draw(photo), random.Random(0)
        for _ in range(400):
            x, y = rng.randrange(photo.width), rng.randrange(photo.height)
            draw.line((x, y, x - 6, y + 22), fill=(170, 170, 190), width=1)
        return photo
    raise ValueError(f"unknown photo scene {scene!r}")


def draw_scene(scene: str, seed: int) -> Image.Image:
    if scene.startswith("photo-"):
        return photo_scene(scene)
    rng = random.Random(seed)
    w, h = SIZE
    if scene == "sunny":  # blue sky, yellow sun, green grass
        image = Image.new("RGB", SIZE, jitter((110, 180, 250), rng))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, int(h * 0.7), w, h], fill=jitter((90, 190, 70), rng))
        cx, cy, r = rng.randint(30, w - 30), rng.randint(18, 40), rng.randint(14, 22)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter((255, 215, 40), rng, 8))
    elif scene == "party":  # warm background, balloons and confetti
        image = Image.new("RGB", SIZE, jitter((250, 200, 90), rng))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x, y = rng.randint(10, w - 30), rng.randint(10, h - 50)
            draw.ellipse([x, y, x + 20, y + 26], fill=jitter((230, 60, 120), rng, 40))
            draw.line([x + 10, y + 26, x + 10, y + 50], fill=(80, 80, 80))
        for _ in range(40):
            x, y = rng.randint(0, w), rng.randint(0, h)
            draw.rectangle([x, y, x + 2, y + 2], fill=jitter((255, 255, 120), rng, 60))
    elif scene == "storm":  # dark clouds, rain
        image = Image.new("RGB", SIZE, jitter((35, 45, 75), rng))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randint(-10, w - 40), rng.randint(0, 30)
            draw.ellipse([x, y, x + 60, y + 30], fill=jitter((70, 75, 90), rng))
        for _ in range(40):
            x, y = rng.randint(0, w), rng.randint(30, h)
            draw.line([x, y, x - 4, y + 10], fill=(150, 160, 190))
    elif scene == "night":  # near-black street with a few dim lights
        image = Image.new("RGB", SIZE, jitter((20, 25, 45), rng))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, int(h * 0.75), w, h], fill=jitter((40, 40, 50), rng))
        for _ in range(3):
            x = rng.randint(10, w - 10)
            draw.ellipse([x - 4, 20, x + 4, 28], fill=(200, 180, 90))
    elif scene == "office":  # grey walls, a window grid
        image = Image.new("RGB", SIZE, jitter((128, 128, 128), rng, 10))
        draw = ImageDraw.Draw(image)
        for row in range(3):
            for col in range(5):
                x, y = 10 + col * 29, 12 + row * 34
                draw.rectangle([x, y, x + 20, y + 24], fill=jitter((165, 170, 175), rng, 8))
    elif scene == "paper":  # a sheet of paper with lines of "text"
        image = Image.new("RGB", SIZE, jitter((120, 120, 125), rng, 8))
        draw = ImageDraw.Draw(image)
        draw.rectangle([30, 8, w - 30, h - 8], fill=jitter((225, 225, 220), rng, 6))
        for y in range(18, h - 14, 9):
            draw.line([38, y, rng.randint(70, w - 38), y], fill=(110, 110, 110), width=2)
    else:
        raise ValueError(f"unknown scene {scene!r}")
    return image


def main(out: Path = HERE) -> Path:
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (pair_id, text, scene, label, note) in enumerate(PAIRS):
        picture = draw_scene(scene, seed=1000 + k)
        if scene.startswith("photo-"):
            name = f"{pair_id}.jpg"
            picture.save(images / name, quality=90)
        else:
            name = f"{pair_id}.png"
            picture.save(images / name, optimize=True)
        rows.append({"id": pair_id, "text": text, "image": name, "label": label, "note": note})
    csv_path = out / "examples.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "image", "label", "note"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


if __name__ == "__main__":
    print(f"wrote {main()}")
