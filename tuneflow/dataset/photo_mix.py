"""Generated photos with the sizes, aspect ratios and encodings of a real photo set, for the benchmarks.

Food-101's photos were scaled to at most 512 px on the longer side: most are 512x512, many 512x384 or 384x512
(4:3 both ways), some 512x341 (3:2) and a tail of smaller ones. A user's own set adds photos straight from a
phone. Preparation re-encodes a few (EXIF-rotated, CMYK, WebP sources) as JPEG at quality 95, and keeps
lossless sources as PNG. Each share below is a fraction of the photos; the JPEGs carry the sensor noise of
`draw_dish`, so their sizes (35-55 KB at 512x384, q85) are those of real photos and the entropy decoding, the
larger part of a JPEG decode, costs what it costs on real ones.

`food101-real` follows what was measured on 5,000 real Food-101 photos (docs/benchmarks.md): every photo at most
512 px, 65 % 512x512, 26 % landscape, 10 % portrait; 90 % 4:2:0 chroma, 6 % 4:2:2, 3 % 4:4:4; never
progressive; one grayscale photo in 5,000; and each photo's JPEG quality searched so that its file size is one
drawn from the real sizes (33 / 49 / 67 KB at the 10th / 50th / 90th percentile).
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import shutil
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
    encoding: str  # "jpeg", "progressive", "jpeg95" (re-encoded by preparation), "png" or "sized" (below)
    # PIL's JPEG chroma subsampling: 2 = 4:2:0 (what most cameras and PIL write), 1 = 4:2:2, 0 = 4:4:4.
    subsampling: int = 2
    grayscale: bool = False


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


# Real Food-101 (measured): shapes by share, chroma by share, file sizes by percentile.
FOOD101_SHAPES = ((512, 512, 0.645), (512, 384, 0.14), (512, 341, 0.06), (512, 382, 0.03), (512, 288, 0.03),
                  (384, 512, 0.06), (382, 512, 0.035))
FOOD101_CHROMA = ((2, 0.91), (1, 0.06), (0, 0.03))
CHROMA_NAMES = {2: "4:2:0", 1: "4:2:2", 0: "4:4:4"}
GRAYSCALE_SHARE = 1 / 5000
# (percentile, KB) of the file size, and the tails continued with the slope of the nearer pair (in log size).
FOOD101_SIZE_PERCENTILES = ((0.10, 33.0), (0.50, 49.0), (0.90, 67.0))
FOOD101_REAL_MIX = tuple(
    PhotoKind(f"{width}x{height} {CHROMA_NAMES[chroma]}", shape_share * chroma_share
              - (GRAYSCALE_SHARE if (width, height, chroma) == (512, 512, 2) else 0), width, height, "sized", chroma)
    for width, height, shape_share in FOOD101_SHAPES for chroma, chroma_share in FOOD101_CHROMA
) + (PhotoKind("512x512 grayscale", GRAYSCALE_SHARE, 512, 512, "sized", grayscale=True),)


def drawn_file_size(rng: random.Random) -> int:
    """A file size in bytes drawn from FOOD101_SIZE_PERCENTILES: log-linear between the percentiles, kept within
    the 1st and 99th."""
    quantile = min(0.99, max(0.01, rng.random()))
    points = FOOD101_SIZE_PERCENTILES
    index = 0 if quantile <= points[1][0] else 1
    (low_q, low_kb), (high_q, high_kb) = points[index], points[index + 1]
    log_kb = math.log(low_kb) + (quantile - low_q) / (high_q - low_q) * (math.log(high_kb) - math.log(low_kb))
    return round(math.exp(log_kb) * 1000)


def encode_to_size(photo: Image.Image, target: int, subsampling: int) -> bytes:
    """The baseline JPEG whose size is nearest `target`, by a binary search over the quality (20-98)."""
    best = b""
    low, high = 20, 98
    while low <= high:
        quality = (low + high) // 2
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=quality, subsampling=subsampling if photo.mode == "RGB" else 0)
        data = buffer.getvalue()
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) < target:
            low = quality + 1
        else:
            high = quality - 1
    return best


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
    if kind.encoding == "sized":
        return encode_to_size(photo.convert("L") if kind.grayscale else photo, drawn_file_size(rng),
                              kind.subsampling), ".jpg"
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
    """`root/train/<class>/<n>.<jpg|png>` in the mix; kept between runs (a marker says it is complete, for how many
    photos per class, which classes and which mix)."""
    done = root / ".complete"
    recipe = f"{per_class} per class of {', '.join(classes)}, mix {hashlib.sha256(repr(mix).encode()).hexdigest()[:12]}"
    if done.is_file() and done.read_text() == recipe:
        return root
    # Photos of another count (or of a run cut short) would be listed with these: start from an empty folder.
    shutil.rmtree(root, ignore_errors=True)
    for class_name in classes:
        folder = root / "train" / class_name
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(class_name)
        for number, kind in enumerate(photo_kinds_for(per_class, mix)):
            data, suffix = encode_photo(class_name, kind, rng)
            (folder / f"{number:05d}{suffix}").write_bytes(data)
    done.write_text(recipe)
    return root


MIXES = {"real": REAL_PHOTO_MIX, "food101": FOOD101_PHOTO_MIX, "food101-real": FOOD101_REAL_MIX}


def describe_photos(paths: list[str]) -> str:
    """File-size percentiles, chroma subsampling and progressive shares, as measured on real Food-101."""
    from PIL import JpegImagePlugin

    sizes = sorted(Path(path).stat().st_size for path in paths)
    chroma: dict[str, int] = {}
    progressive = grayscale = 0
    for path in paths:
        with Image.open(path) as image:
            if image.format != "JPEG":
                continue
            grayscale += image.mode == "L"
            progressive += bool(image.info.get("progressive") or image.info.get("progression"))
            name = CHROMA_NAMES.get(JpegImagePlugin.get_sampling(image), "gray")
            chroma[name] = chroma.get(name, 0) + 1
    percentile = {p: sizes[min(len(sizes) - 1, round(p / 100 * (len(sizes) - 1)))] / 1000 for p in (10, 50, 90)}
    shares = ", ".join(f"{name} {count / len(paths):.1%}" for name, count in sorted(chroma.items()))
    return (f"file size {percentile[10]:.0f} / {percentile[50]:.0f} / {percentile[90]:.0f} KB at the 10th / 50th / "
            f"90th percentile (real Food-101: 33 / 49 / 67); chroma {shares}; progressive {progressive}, "
            f"grayscale {grayscale} of {len(paths)}")
