"""Decide whether a file's bytes are an image TensorFlow will decode as RGB, converting those it would not.

The training input decodes with `tf.io.decode_image`, which crashes the whole epoch on a truncated JPEG and does
not read WebP, CMYK JPEGs or Pillow's 16-bit modes. So every file that leaves this module is an RGB JPEG or an
8-bit RGB PNG. Checking stays cheap for the common case: an RGB JPEG or PNG is checked from its header and its
end marker (or chunk checksums) and written as is; only other files are decoded and re-encoded.
`tuneflow.evaluation.predict` puts every photo it predicts through `inspect_image` too, so it sees photos as training does.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError, features

AVIF_READABLE = features.check("avif")  # built into Pillow's wheels since 11.3
# Formats Pillow may try: a hostile file never reaches its other plugins (EPS would run Ghostscript). Camera MPO
# files open through the JPEG plugin.
OPENABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "WEBP", "TIFF") + (("AVIF",) if AVIF_READABLE else ())
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "AVIF"})  # re-encoded as JPEG; lossless sources become PNG
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # 89 Mpx: Pillow's own decompression-bomb threshold
JPEG_QUALITY = 95  # re-encoding a photo once at 95 is visually lossless
# Level 1 writes 10-20% larger files than the default 6 in a fraction of the time; these files are read once per
# epoch, not shipped.
PNG_COMPRESS_LEVEL = 1
EXIF_ORIENTATION = 0x0112
JPEG_END = b"\xff\xd9"
PNG_RGB8 = b"\x08\x02"  # IHDR bit depth 8, colour type 2 (truecolour, no alpha)
WHITE = (255, 255, 255)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
PLAIN_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended and progressive Huffman frames
# Segments a plain JPEG has before its frame: JFIF and other APPn (not Adobe's APP14), quantisation and Huffman
# tables, restart interval, comments.
PLAIN_HEADER_MARKERS = frozenset({0xE0, *range(0xE1, 0xEE), 0xEF, 0xDB, 0xC4, 0xDD, 0xFE})
# First bytes of the formats above: a file that starts like one but that Pillow cannot open is damaged, not text.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"RIFF", "WebP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass(frozen=True, slots=True)
class Inspection:
    """What to do with one file: write it (as is, or the converted bytes) with a suffix, or skip it."""

    width: int | None
    height: int | None
    suffix: str | None  # ".jpg" or ".png" when the file is kept
    converted: bytes | None  # bytes to write instead of the original, or None to write the original
    reason: str | None  # skip reason; None when the file is kept
    detail: str  # why it is skipped, or the conversion done ("" when written as is)


def skip(reason: str, detail: str, width: int | None = None, height: int | None = None) -> Inspection:
    return Inspection(width, height, None, None, reason, detail)


def plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a plain JPEG, read from its markers; None for anything else.

    Plain: 8-bit, 3 components, Huffman-coded (baseline or progressive), with no EXIF block (which may turn it) and
    no Adobe block (which may make it CMYK): what cameras and Food-101 write, and what TensorFlow decodes as it is.
    Pillow parses every table of the header in Python; on 100,000 small photos this scan saves a third of the time.
    """
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        length = data[position + 2] << 8 | data[position + 3]
        if length < 2 or position + 2 + length > end:
            return None
        if marker in PLAIN_FRAME_MARKERS:
            if length < 17 or data[position + 4] != 8 or data[position + 9] != 3:  # 8-bit, 3 components
                return None
            height = data[position + 5] << 8 | data[position + 6]
            width = data[position + 7] << 8 | data[position + 8]
            return (width, height) if width and height else None
        exif = marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\0\0"
        if marker not in PLAIN_HEADER_MARKERS or exif:
            return None
        position += 2 + length
    return None


def inspect_image(data: bytes, min_side: int) -> Inspection:
    """Check one file's bytes and say how it goes into the dataset."""
    size = plain_jpeg_size(data)
    if size is not None and data.rstrip(b"\0").endswith(JPEG_END):
        width, height = size
        if width * height > MAX_PIXELS:
            return skip("too-large", f"{width}x{height} px, over {MAX_PIXELS:,} pixels", width, height)
        if min(width, height) < min_side:
            return skip("too-small", f"{width}x{height} px, under min_image_size={min_side}", width, height)
        return Inspection(width, height, ".jpg", None, None, "")
    try:
        with warnings.catch_warnings():
            # Over-large images are skipped below, by our own limit and with a reason, not warned about.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=OPENABLE_FORMATS)
    except Image.DecompressionBombError as error:
        return skip("too-large", str(error))
    except UnidentifiedImageError:
        kind = next((name for signature, name in SIGNATURES if data.startswith(signature)), None)
        if kind and kind != "WebP" or kind == "WebP" and data[8:12] == b"WEBP":
            return skip("corrupt", f"starts like a {kind} file but its header is damaged")
        return skip("not-an-image", f"not an image file (it starts with {data[:12]!r})")
    except Exception as error:  # Pillow raises many types for damaged headers
        return skip("corrupt", f"unreadable image header: {error}")
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            return skip("too-large", f"{width}x{height} px, over {MAX_PIXELS:,} pixels", width, height)
        if min(width, height) < min_side:
            return skip("too-small", f"{width}x{height} px, under min_image_size={min_side}", width, height)
        upright = "exif" not in image.info or orientation(image) in (None, 1)
        if image.format in ("JPEG", "MPO") and image.mode == "RGB" and upright:
            # A missing end marker is what makes TensorFlow's decoder fail ("Invalid JPEG data"); checking for it
            # costs nothing, and a full decode only settles the rare file with bytes after the marker.
            if data.rstrip(b"\0").endswith(JPEG_END) or decodes(image):
                return Inspection(width, height, ".jpg", None, None, "")
            return skip("truncated", "JPEG data ends early (no end-of-image marker)", width, height)
        if image.format == "PNG" and data[24:26] == PNG_RGB8 and upright:
            try:
                image.verify()  # every chunk's CRC, without decompressing
            except Exception as error:
                return skip(*load_failure(error), width, height)
            return Inspection(width, height, ".png", None, None, "")
        return convert_to_rgb(image, width, height)


def orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # a damaged EXIF block does not make the picture unusable
        return None


def decodes(image: Image.Image) -> bool:
    try:
        image.load()
    except Exception:
        return False
    return True


def load_failure(error: Exception) -> tuple[str, str]:
    message = str(error) or type(error).__name__
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return "truncated", f"image data ends early: {message}"
    return "corrupt", f"image data does not decode: {message}"


def convert_to_rgb(image: Image.Image, width: int, height: int) -> Inspection:
    """Decode, turn upright per EXIF, flatten to 8-bit RGB and re-encode (JPEG for lossy sources, else PNG)."""
    source = f"{image.format} {image.mode}"
    frames = getattr(image, "n_frames", 1)
    try:
        image.load()
    except Exception as error:
        return skip(*load_failure(error), width, height)
    turned = orientation(image) not in (None, 1)
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # unreadable orientation: keep the pixels as stored
        upright, turned = image, False
    rgb = flatten_to_rgb(upright)
    lossy = image.format in LOSSY_FORMATS
    buffer = io.BytesIO()
    if lossy:
        rgb.save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        rgb.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    notes = [f"converted {source} to RGB {'JPEG' if lossy else 'PNG'}"]
    if turned:
        notes.append("turned upright per EXIF")
    if frames > 1:
        notes.append(f"first of {frames} frames")
    return Inspection(rgb.width, rgb.height, ".jpg" if lossy else ".png", buffer.getvalue(), None, "; ".join(notes))


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow clips 16-bit values at 255 when converting to 8 bits, which turns most of the picture white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent areas become white, not whatever colour the hidden pixels happen to hold (often black).
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
