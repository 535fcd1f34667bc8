"""The embedded default dataset: procedurally drawn "dishes" zipped in Food-101's archive layout.

No photo can be downloaded here, so the demo and the tests draw their own. Each class has its own shapes and
palette (a lattice pie, golden toast slices, a sausage in a bun, a pepperoni disk, fish slices on a leaf) with
random position, size, rotation, background and noise, so a network has to learn something but can. The same
arguments always give a byte-identical zip.
"""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tuneflow.atomic_files import atomic_destination

SAMPLE_CLASSES = ("apple_pie", "french_toast", "hot_dog", "pizza", "sashimi")
# A fixed timestamp keeps the archive byte-identical from run to run.
ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
JPEG_QUALITY = 90


def _jitter(rng: random.Random, rgb: tuple[int, int, int], amount: int = 25) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _rotated_box(cx: float, cy: float, w: float, h: float, angle: float) -> list[tuple[float, float]]:
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners]


def _draw_apple_pie(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    cx, cy, r = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.4, 0.6), s * rng.uniform(0.28, 0.4)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, (196, 140, 60)))
    lattice = _jitter(rng, (235, 190, 110))
    step = r / rng.choice([2.5, 3, 3.5])
    width = max(1, int(s / 40))
    offset = -r
    while offset <= r:
        half = math.sqrt(max(0.0, r * r - offset * offset))
        draw.line([cx + offset, cy - half, cx + offset, cy + half], fill=lattice, width=width)
        draw.line([cx - half, cy + offset, cx + half, cy + offset], fill=lattice, width=width)
        offset += step


def _draw_french_toast(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    for _ in range(rng.randint(2, 3)):
        cx, cy = s * rng.uniform(0.3, 0.7), s * rng.uniform(0.3, 0.7)
        side = s * rng.uniform(0.3, 0.42)
        box = _rotated_box(cx, cy, side, side, rng.uniform(0, math.pi / 2))
        draw.polygon(box, fill=_jitter(rng, (214, 160, 70)), outline=_jitter(rng, (130, 80, 30)), width=max(1, s // 32))
    for _ in range(rng.randint(8, 20)):  # powdered sugar
        x, y, d = s * rng.random(), s * rng.random(), max(1, s / 64)
        draw.ellipse([x - d, y - d, x + d, y + d], fill=(250, 250, 245))


def _draw_hot_dog(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    cx, cy, angle = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.4, 0.6), rng.uniform(-0.6, 0.6)
    length = s * rng.uniform(0.6, 0.8)
    draw.polygon(_rotated_box(cx, cy, length, s * 0.3, angle), fill=_jitter(rng, (225, 185, 120)))
    draw.polygon(_rotated_box(cx, cy, length * 1.08, s * 0.13, angle), fill=_jitter(rng, (160, 55, 35)))
    mustard = _jitter(rng, (235, 200, 30), 15)
    points = []
    for i in range(9):
        t = (i / 8 - 0.5) * length * 0.9
        wobble = (s * 0.04) * (1 if i % 2 else -1)
        points.append((cx + t * math.cos(angle) - wobble * math.sin(angle), cy + t * math.sin(angle) + wobble * math.cos(angle)))
    draw.line(points, fill=mustard, width=max(1, s // 40))


def _draw_pizza(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    cx, cy, r = s * rng.uniform(0.4, 0.6), s * rng.uniform(0.4, 0.6), s * rng.uniform(0.3, 0.42)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, (210, 160, 90)))
    inner = r * 0.85
    draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=_jitter(rng, (200, 60, 30)))
    for _ in range(rng.randint(6, 12)):
        a, d = rng.uniform(0, 2 * math.pi), inner * math.sqrt(rng.random()) * 0.85
        x, y, pr = cx + d * math.cos(a), cy + d * math.sin(a), r * rng.uniform(0.08, 0.14)
        color = (250, 240, 200) if rng.random() < 0.4 else _jitter(rng, (130, 20, 20))
        draw.ellipse([x - pr, y - pr, x + pr, y + pr], fill=color)


def _draw_sashimi(draw: ImageDraw.ImageDraw, rng: random.Random, s: int) -> None:
    leaf_y = s * rng.uniform(0.55, 0.75)
    draw.ellipse([s * 0.1, leaf_y - s * 0.12, s * 0.9, leaf_y + s * 0.12], fill=_jitter(rng, (60, 150, 60)))
    angle = rng.uniform(-0.4, 0.4)
    for i in range(rng.randint(3, 5)):
        cx = s * (0.25 + 0.13 * i) + rng.uniform(-3, 3)
        cy = s * rng.uniform(0.35, 0.55)
        box = _rotated_box(cx, cy, s * 0.12, s * 0.36, angle)
        draw.polygon(box, fill=_jitter(rng, (240, 110, 100)))
        stripe = _rotated_box(cx, cy, s * 0.02, s * 0.34, angle)
        draw.polygon(stripe, fill=(250, 225, 215))


DRAWERS: dict[str, Callable[[ImageDraw.ImageDraw, random.Random, int], None]] = {
    "apple_pie": _draw_apple_pie,
    "french_toast": _draw_french_toast,
    "hot_dog": _draw_hot_dog,
    "pizza": _draw_pizza,
    "sashimi": _draw_sashimi,
}


def draw_dish(class_name: str, rng: random.Random, size: int) -> Image.Image:
    """One procedurally drawn photo of a dish on a plate, with lighting and sensor noise."""
    background = _jitter(rng, rng.choice([(90, 70, 50), (200, 200, 195), (60, 60, 70), (170, 130, 90)]), 30)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    plate = size * rng.uniform(0.45, 0.5)
    center = size / 2 + rng.uniform(-size * 0.05, size * 0.05)
    draw.ellipse([center - plate, center - plate, center + plate, center + plate], fill=_jitter(rng, (235, 235, 230), 12))
    DRAWERS[class_name](draw, rng, size)
    image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, size / 160)))
    # Sensor noise from our own seeded generator: PIL's effect_noise draws from an unseeded global one.
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(4, 12), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def write_sample_dataset(
    destination: Path,
    images_per_class: int = 60,
    image_size: int = 128,
    classes: tuple[str, ...] = SAMPLE_CLASSES,
    seed: int = 0,
) -> Path:
    """Write a deterministic dataset.zip in Food-101's layout: food-101/images/<class>/<id>.jpg plus meta/."""
    unknown = sorted(set(classes) - set(DRAWERS))
    if unknown:
        raise ValueError(f"no drawing for classes {unknown}; the sample knows {sorted(DRAWERS)}")
    if images_per_class < 2:
        raise ValueError(f"images_per_class={images_per_class}: need at least 2 per class to split train/val")
    destination.parent.mkdir(parents=True, exist_ok=True)
    train_lines: list[str] = []
    test_lines: list[str] = []
    with atomic_destination(destination) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
        for class_index, class_name in enumerate(classes):
            rng = random.Random(f"{seed}/{class_name}")
            for i in range(images_per_class):
                image_id = 100000 + class_index * 10000 + i
                buffer = io.BytesIO()
                draw_dish(class_name, rng, image_size).save(buffer, "JPEG", quality=JPEG_QUALITY)
                entry = zipfile.ZipInfo(f"food-101/images/{class_name}/{image_id}.jpg", ZIP_DATE_TIME)
                archive.writestr(entry, buffer.getvalue())
                # Food-101's own split files hold 750/250 per class; keep the same shape.
                (train_lines if i % 4 else test_lines).append(f"{class_name}/{image_id}")
        for name, text in (
            ("classes.txt", "\n".join(classes)),
            ("train.txt", "\n".join(train_lines)),
            ("test.txt", "\n".join(test_lines)),
        ):
            archive.writestr(zipfile.ZipInfo(f"food-101/meta/{name}", ZIP_DATE_TIME), text + "\n")
    return destination
