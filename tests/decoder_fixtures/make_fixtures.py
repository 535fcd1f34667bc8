"""How the photos in this folder were made (once, with Pillow 13; kept as files because another Pillow or
libjpeg-turbo may encode the same pixels to other bytes).

Each is decoded at 8 px by tests/test_decoder_version.py: one photo per decode plan, at the edges of the rules
(a shorter side just at a DCT downscale's threshold, a longer side just below or at a filter's), in every JPEG
chroma subsampling, progressive, grayscale (its header read by Pillow, not the plain-JPEG scan) and PNG. Running
this again rewrites them; then record the new pixels in that test.

    .venv/bin/python tests/decoder_fixtures/make_fixtures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# name: (width, height, Pillow save options); the name says the plan at 8 px.
FIXTURES = {
    "jpeg8-bilinear-420.jpg": (55, 120, {"subsampling": 2}),
    "jpeg8-antialias-444.jpg": (121, 55, {"subsampling": 0}),
    "jpeg4-bilinear-422.jpg": (54, 60, {"subsampling": 1}),
    "jpeg4-antialias-progressive.jpg": (28, 61, {"subsampling": 2, "progressive": True}),
    "jpeg2-bilinear-gray.jpg": (27, 30, {}),
    "jpeg2-antialias-420.jpg": (31, 14, {"subsampling": 2}),
    "jpeg1-bilinear-444.jpg": (13, 15, {"subsampling": 0}),
    "jpeg1-area-420.jpg": (8, 23, {"subsampling": 2}),
    "jpeg1-antialias-422.jpg": (24, 13, {"subsampling": 1}),
    "png-bilinear.png": (15, 10, {}),
    "png-area-gray.png": (16, 8, {}),
    "png-antialias.png": (24, 20, {}),
}


def main() -> None:
    folder = Path(__file__).parent
    for number, (name, (width, height, options)) in enumerate(FIXTURES.items()):
        coarse = np.random.default_rng(number).integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), "uint8")
        photo = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)  # smooth, with some detail
        if "gray" in name:
            photo = photo.convert("L")
        if name.endswith(".jpg"):
            photo.save(folder / name, "JPEG", quality=75, optimize=True, **options)
        else:
            photo.save(folder / name, "PNG")


if __name__ == "__main__":
    main()
