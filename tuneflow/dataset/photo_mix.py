"""Generated photos with the sizes, aspect ratios and encodings of a real photo set, for the benchmarks.

Food-101's photos were scaled to at most 512 px on the longer side: most are 512x512, many 512x384 or 384x512
(4:3 both ways), some 512x341 (3:2) and a tail of smaller ones. A user's own set adds photos straight from a
phone. Preparation re-encodes a few (EXIF-rotated, CMYK, WebP sources) as JPEG at quality 95, and keeps
lossless sources as PNG. Each share below is a fraction of the photos; the JPEGs carry the sensor noise of
`draw_dish`, so their sizes (35-55 KB at 512x384, q85) are those of real photos and the entropy decoding, the
larger part of a JPEG decode, costs what it costs on real ones.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tuneflow.dataset.sample import draw_dish


@dataclass(frozen=True)
class PhotoKind:
    name: str
    share: float
    width: int
    height: int
    encoding: str  # "jpeg", "progressive", "jpeg95" (re-encoded by preparation) or "png"


# Shares add up to 1; `photo_kinds_for` turns them into whole counts.
REAL_PHOTO_MIX = (
    PhotoKind("512x512", 0.40, 512, 512, "jpeg"),
    PhotoKind("512x384", 0.20, 512, 384, "jpeg"),
    PhotoKind("384x512", 0.10, 384, 512, "jpeg"),
    PhotoKind("512x341", 0.07, 512, 341, "jpeg"),
    PhotoKind("512x512 progressive", 0.05, 512, 512, "progressive"),
    PhotoKind("smaller 382x287", 0.08, 382, 287, "jpeg"),
    PhotoKind("re-encoded q95 by preparation", 0.05, 512, 384, "jpeg95"),
    PhotoKind("PNG (lossless source)", 0.02, 512, 384, "png"),
    PhotoKind("phone 4032x3024", 0.01, 4032, 3024, "jpeg"),
    PhotoKind("phone 3024x4032", 0.01, 3024, 4032, "jpeg"),
    PhotoKind("small 306x512", 0.01, 306, 512, "jpeg"),
)


# Food-101 alone: no phone photos, the other shares scaled up to make 1.
FOOD101_PHOTO_MIX = tuple(
    PhotoKind(kind.name, kind.share / 0.98, kind.width, kind.height, kind.encoding)
    for kind in REAL_PHOTO_MIX if not kind.name.startswith("phone")
)


def photo_kinds_for(count: int, mix: tuple[PhotoKind, ...] = REAL_PHOTO_MIX) -> list[PhotoKind]:
    """`count` kinds in the mix's proportions (largest remainders), in a fixed shuffled order."""
    exact = [kind.share * count for kind in mix]
    counts = [int(value) for value in exact]
    by_remainder = sorted(range(len(mix)), key=lambda index: exact[index] - counts[index], reverse=True)
    for index in by_remainder[: count - sum(counts)]:
        counts[index] += 1
    kinds = [kind for kind, number in zip(mix, counts) for _ in range(number)]
    random.Random(count).shuffle(kinds)
    return kinds


def encode_photo(class_name: str, kind: PhotoKind, rng: random.Random) -> tuple[bytes, str]:
    """One photo of `kind`: (bytes, file suffix)."""
    longer = max(kind.width, kind.height)
    # Large photos are drawn at 1024 px and scaled up, with fresh sensor noise at their own size: the entropy
    # of a real phone photo, without minutes of drawing.
    drawn = draw_dish(class_name, rng, min(longer, 1024))
    photo = drawn.resize((kind.width, kind.height), Image.BICUBIC)
    if longer > 1024:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 4, (kind.height, kind.width, 3))
        photo = Image.fromarray(np.clip(np.asarray(photo, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if kind.encoding == "png":
        photo.save(buffer, "PNG", compress_level=1)  # what preparation writes for lossless sources
        return buffer.getvalue(), ".png"
    quality = 95 if kind.encoding == "jpeg95" else rng.choice((75, 85, 90))
    photo.save(buffer, "JPEG", quality=quality, progressive=kind.encoding == "progressive")
    return buffer.getvalue(), ".jpg"


def write_photo_mix(
    root: Path, classes: tuple[str, ...], per_class: int, mix: tuple[PhotoKind, ...] = REAL_PHOTO_MIX
) -> Path:
    """`root/train/<class>/<n>.<jpg|png>` in the mix; kept between runs (a marker says it is complete)."""
    done = root / f".complete-{per_class}"
    if done.exists():
        return root
    for class_name in classes:
        folder = root / "train" / class_name
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(class_name)
        for number, kind in enumerate(photo_kinds_for(per_class, mix)):
            data, suffix = encode_photo(class_name, kind, rng)
            (folder / f"{number:05d}{suffix}").write_bytes(data)
    done.touch()
    return root
