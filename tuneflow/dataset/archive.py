"""Read a dataset zip's table of contents and decide what every file in it is, before decompressing anything.

`scan_archive` works from member names and central-directory metadata alone: which files are images of which
class (and, in an archive that is already split, on which side), and why each other file is passed over. Unsafe
entries (path traversal, absolute paths, symlinks, encrypted or zip-bomb shaped files) are rejected here, so not a
byte of them is ever decompressed or written.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneflow.config import DataSettings
from tuneflow.dataset.images import AVIF_READABLE

Layout = Literal["food-101", "split-folders", "class-folders"]
GivenSplit = Literal["train", "val"]

ACCEPTED_LAYOUTS = (
    "accepted layouts:\n"
    "  <class>/<photo>                      one folder per class, at the top or under one folder "
    "(dataset/<class>/...)\n"
    "  train/<class>/<photo> + val/<class>/<photo>   already split (val/ may be validation/, valid/ or test/)\n"
    "  food-101/images/<class>/<photo> + food-101/meta/   Food-101 as downloaded"
)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
    | ({".avif"} if AVIF_READABLE else set())
)
# Photo formats Pillow cannot open on its own: named in the skip, so the fix (export as JPEG) is obvious.
UNSUPPORTED_IMAGE_SUFFIXES = {
    ".heic": "HEIC (iPhone)",
    ".heif": "HEIF",
    ".avif": "AVIF",  # only when this Pillow lacks AVIF support
    ".dng": "RAW (DNG)",
    ".cr2": "RAW (Canon)",
    ".cr3": "RAW (Canon)",
    ".nef": "RAW (Nikon)",
    ".arw": "RAW (Sony)",
    ".raf": "RAW (Fujifilm)",
    ".orf": "RAW (Olympus)",
    ".svg": "SVG (vector)",
    ".psd": "Photoshop",
}
NOISE_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})
NOISE_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
# zipfile reads these; anything else (Deflate64 from Windows Explorer, AES from WinZip) it cannot.
READABLE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
COMPRESSION_NAMES = {6: "Implode", 9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "WinZip AES"}
# A small entry cannot hurt whatever its ratio (and the total-size limit bounds many of them); a photo over 1 MiB
# that expands a hundredfold is not a photo.
RATIO_CHECK_MIN_BYTES = 1 << 20
TRAIN_FOLDERS = ("train", "training")
VAL_FOLDERS = ("val", "validation", "valid", "test", "testing")  # the first one present is the validation side
FOOD101_META_FILES = ("classes.txt", "train.txt", "test.txt")
MAX_META_BYTES = 64 << 20  # Food-101's meta/train.txt is 1.4 MB
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
DRIVE_LETTER = re.compile(r"[A-Za-z]:")
STEM_MAX_BYTES = 150  # leaves room for "-NN.jpg" under the 255-byte file-name limit
UTF8_NAME_FLAG = 0x800
ENCRYPTED_FLAG = 0x1


class ArchiveError(ValueError):
    """The archive cannot be prepared as given; the message says what is wrong and how to fix it."""


@dataclass(frozen=True, slots=True)
class Member:
    """One file in the archive, as its central directory describes it."""

    index: int  # position in the central directory: names can repeat, positions cannot
    path: str  # decoded name, "/"-separated, as the user sees it
    size: int
    packed_size: int
    crc: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image file that the layout assigns to a class (and, in a split archive, to a side)."""

    member: Member
    label: str
    given_split: GivenSplit | None
    inner: str  # path inside the class folder, e.g. "2019/IMG_0001.JPG"
    stem: str  # output file name without extension, set by name_files


@dataclass(frozen=True, slots=True)
class PassedOver:
    """A file that will not be used, and why: 'ignored' for noise and files not asked for, 'skipped' for bad ones."""

    member: Member
    status: Literal["ignored", "skipped"]
    reason: str
    detail: str
    label: str | None = None


@dataclass(frozen=True)
class Catalog:
    """What the archive holds: its layout, the candidate images and every file passed over."""

    layout: Layout
    top: str  # folder holding the layout ("" for the archive's root), e.g. "food-101/"
    candidates: list[Candidate]
    passed_over: list[PassedOver]
    name_encoding: str  # how names not marked UTF-8 were decoded

    @property
    def classes(self) -> list[str]:
        return sorted({candidate.label for candidate in self.candidates})

    @property
    def has_own_split(self) -> bool:
        return self.layout != "class-folders"


def open_archive(path: Path) -> zipfile.ZipFile:
    """Open a zip for reading, turning every way it can fail into an error that names the fix."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ArchiveError(
            f"{str(path)!r} is {describe_non_zip(path)} ({error}); make a zip of the dataset folder "
            "(`zip -r dataset.zip dataset/`) and use that"
        ) from None
    except UnicodeDecodeError as error:
        raise ArchiveError(
            f"{str(path)!r} marks a file name as UTF-8 but it is not ({error}); re-zip the folder with "
            "`zip -r` or 7-Zip"
        ) from None
    except NotImplementedError as error:
        raise ArchiveError(
            f"{str(path)!r} needs a zip feature Python cannot read ({error}); re-zip it with `zip -r`"
        ) from None


def describe_non_zip(path: Path) -> str:
    """Say what a file that zipfile rejected most likely is, from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(264)
    if not head:
        return "empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip whose end is missing: truncated, e.g. an interrupted download or copy"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (.tar.gz?), not a zip"
    if head.startswith(b"Rar!"):
        return "a RAR archive, not a zip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "a 7-Zip archive, not a zip"
    if head[257:262] == b"ustar":
        return "a tar archive, not a zip"
    return "not a zip archive"


def scan_archive(archive: zipfile.ZipFile, settings: DataSettings) -> Catalog:
    """Classify every file of the archive and detect its layout, from the central directory alone."""
    infos = archive.infolist()
    names, encoding = decode_names(infos, settings.name_encoding)
    images: list[tuple[Member, tuple[str, ...]]] = []
    passed_over: list[PassedOver] = []
    all_paths: set[str] = set()
    ratio_limit = settings.max_compression_ratio
    size_limit = int(settings.max_image_mb * 1e6)
    for index, (info, name) in enumerate(zip(infos, names)):
        if name.endswith(("/", "\\")) and info.file_size == 0:
            continue  # a folder entry, not a file
        member = Member(index, name.replace("\\", "/"), info.file_size, info.compress_size, info.CRC)
        parts, problem = split_member_path(name)
        if problem:
            passed_over.append(PassedOver(member, "skipped", "unsafe-path", problem))
            continue
        all_paths.add("/".join(parts))
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            passed_over.append(PassedOver(member, "skipped", "symlink", "symbolic link; links are never followed"))
            continue
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a plain file
            passed_over.append(PassedOver(member, "skipped", "special-file", f"not a regular file (mode {mode:o})"))
            continue
        noise = describe_noise(parts)
        if noise:
            passed_over.append(PassedOver(member, "ignored", "noise", noise))
            continue
        suffix = suffix_of(parts[-1])
        unsupported = unsupported_format(suffix)
        if unsupported:
            passed_over.append(PassedOver(member, "skipped", "unsupported-format", unsupported))
            continue
        if suffix not in IMAGE_SUFFIXES:
            kind = f"'{suffix}' file" if suffix else "file without an extension"
            passed_over.append(PassedOver(member, "ignored", "not-an-image-file", f"{kind}, not an image"))
            continue
        rejection = reject_image_entry(info, size_limit, ratio_limit)
        if rejection:
            passed_over.append(PassedOver(member, "skipped", *rejection))
            continue
        images.append((member, parts))
    encrypted = sum(1 for item in passed_over if item.reason == "encrypted")
    if encrypted and not images:
        raise ArchiveError(
            f"every image in {archive.filename or 'the archive'} is password-protected ({encrypted} files); unzip it "
            "with its password and zip the folder again without one (`zip -r dataset.zip dataset/`)"
        )
    layout, top = detect_layout([parts for _, parts in images], all_paths, passed_over, archive.filename)
    candidates, misplaced = assign_classes(images, layout, top)
    return Catalog(layout, "".join(f"{part}/" for part in top), candidates, passed_over + misplaced, encoding)


def decode_names(infos: list[zipfile.ZipInfo], encoding: str | None) -> tuple[list[str], str]:
    """Decode names the zip does not mark as UTF-8 with the given encoding, or the first that fits them all.

    Zips made on Windows store names in the system code page without saying which (Shift-JIS/cp932 on Japanese
    Windows, cp437 by the zip spec); Linux `zip` writes UTF-8 without setting the flag. zipfile decodes them all
    as cp437, which maps every byte, so encoding back to cp437 recovers the raw bytes to decode properly.
    """
    raw = {
        index: info.orig_filename.encode("cp437")
        for index, info in enumerate(infos)
        if not info.flag_bits & UTF8_NAME_FLAG and not info.orig_filename.isascii()
    }
    if encoding is None:
        encoding = next((enc for enc in ("utf-8", "cp932") if all(fits(name, enc) for name in raw.values())), "cp437")
    names = [info.orig_filename for info in infos]
    for index, name in raw.items():
        names[index] = name.decode(encoding, errors="replace")
    return names, encoding


def fits(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def split_member_path(name: str) -> tuple[tuple[str, ...], str | None]:
    """Split a member name into folder parts, or say why it is unsafe to use at all."""
    name = name.replace("\\", "/")  # old Windows zippers write backslashes
    if name.startswith("/") or DRIVE_LETTER.match(name):
        return (), "absolute path; only paths inside the archive are used"
    if CONTROL_CHARACTER.search(name):
        return (), "control characters in the file name"
    parts = tuple([part for part in name.split("/") if part and part != "."])
    if ".." in parts:
        return (), "climbs out of the archive with '..'"
    if not parts:
        return (), "empty file name"
    # A part needs at least 64 characters to exceed 255 bytes of UTF-8: only long names are measured.
    if len(name) > 63 and any(len(part.encode("utf-8", "replace")) > 255 for part in parts):
        return (), "a folder or file name longer than 255 bytes"
    return parts, None


def suffix_of(file_name: str) -> str:
    """'.jpg' for 'IMG_1.JPG'; '' without a dot (pathlib's rule, without pathlib's cost on 100k names)."""
    dot = file_name.rfind(".")
    return file_name[dot:].lower() if dot > 0 else ""


def unsupported_format(suffix: str) -> str | None:
    """Why a photo with this suffix cannot be read, with the fix, for the formats Pillow cannot open; else None."""
    if suffix in UNSUPPORTED_IMAGE_SUFFIXES and suffix not in IMAGE_SUFFIXES:
        return f"{UNSUPPORTED_IMAGE_SUFFIXES[suffix]} images cannot be read; export them as JPEG"
    return None


def describe_noise(parts: tuple[str, ...]) -> str | None:
    for part in parts[:-1]:
        if part.lower() in NOISE_FOLDERS:
            return f"inside {part}/ (system metadata)"
        if part.startswith("."):
            return f"inside hidden folder {part}/"
    name = parts[-1]
    if name.lower() in NOISE_FILES:
        return "Windows/macOS system file"
    if name.startswith("."):
        return "hidden file (e.g. .DS_Store or a macOS ._ resource fork)"
    return None


def reject_image_entry(info: zipfile.ZipInfo, size_limit: int, ratio_limit: float) -> tuple[str, str] | None:
    """Reason and detail for an image entry that must not be decompressed, or None when it may be."""
    if info.flag_bits & ENCRYPTED_FLAG:
        return "encrypted", "password-protected; re-zip the photos without a password"
    if info.compress_type not in READABLE_COMPRESSION:
        method = COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return "unsupported-compression", f"compressed with {method}; re-zip with `zip -r` or 7-Zip (Deflate)"
    if info.file_size > size_limit:
        return "too-large", f"{info.file_size / 1e6:,.1f} MB, over max_image_mb={size_limit / 1e6:g}"
    if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > ratio_limit * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return "zip-bomb", (
            f"expands {ratio:,.0f}x ({info.compress_size:,} to {info.file_size:,} bytes), over "
            f"max_compression_ratio={ratio_limit:g}; photos barely compress"
        )
    return None


def detect_layout(
    image_paths: list[tuple[str, ...]], all_paths: set[str], passed_over: list[PassedOver], archive_name: str | None
) -> tuple[Layout, tuple[str, ...]]:
    """Find the folder holding the dataset and how it is organised, descending through single wrapper folders."""
    top: tuple[str, ...] = ()
    while image_paths:
        depth = len(top)
        folders = {path[depth] for path in image_paths if len(path) > depth + 1}
        loose = sum(1 for path in image_paths if len(path) == depth + 1)
        lowered = {folder.lower() for folder in folders}
        if folders == {"images"} and any("/".join((*top, "meta", name)) in all_paths for name in FOOD101_META_FILES):
            return "food-101", top
        if lowered & set(TRAIN_FOLDERS) and lowered & set(VAL_FOLDERS):
            return "split-folders", top
        nested = any(len(path) > depth + 2 for path in image_paths)
        if len(folders) == 1 and not loose and nested:
            top = (*top, folders.pop())  # a wrapper folder (dataset/): look inside it
            continue
        if folders:
            return "class-folders", top
        break
    raise ArchiveError(
        f"{archive_name or 'the archive'} fits no dataset layout: {summarise_contents(image_paths, passed_over)}.\n"
        f"{ACCEPTED_LAYOUTS}"
    )


def summarise_contents(image_paths: list[tuple[str, ...]], passed_over: list[PassedOver]) -> str:
    if image_paths:
        folder = "/".join(image_paths[0][:-1])
        where = f"directly in '{folder}/'" if folder else "at the top of the archive"
        found = f"found {len(image_paths)} images {where} and no class folders"
    else:
        found = "found no images"
    others = Counter(item.reason for item in passed_over)
    if others:
        found += " (and " + ", ".join(f"{count} {reason}" for reason, count in sorted(others.items())) + ")"
    return found


def assign_classes(
    images: list[tuple[Member, tuple[str, ...]]], layout: Layout, top: tuple[str, ...]
) -> tuple[list[Candidate], list[PassedOver]]:
    """Give each image its class (and, in a split archive, its side); names come later, from name_files."""
    depth = len(top)
    train_folder = val_folder = None
    if layout == "split-folders":
        present = {path[depth].lower() for _, path in images if len(path) > depth + 1}
        train_folder = next(name for name in TRAIN_FOLDERS if name in present)
        val_folder = next(name for name in VAL_FOLDERS if name in present)
    placed: list[Candidate] = []
    misplaced: list[PassedOver] = []
    for member, path in images:
        given: GivenSplit | None = None
        class_depth = depth
        if layout == "food-101":
            class_depth = depth + 1
        elif layout == "split-folders":
            folder = path[depth].lower() if len(path) > depth + 1 else None
            if folder not in (train_folder, val_folder):
                detail = (
                    f"'{path[depth]}/' is not used: '{val_folder}/' is the validation side"
                    if folder in VAL_FOLDERS
                    else f"outside the {train_folder}/ and {val_folder}/ folders"
                )
                misplaced.append(PassedOver(member, "ignored", "outside-split-folders", detail))
                continue
            given = "train" if folder == train_folder else "val"
            class_depth = depth + 1
        if len(path) <= class_depth + 1:
            misplaced.append(PassedOver(member, "ignored", "not-in-class-folder", "not inside a class folder"))
            continue
        inner = path[class_depth + 1 :]
        placed.append(Candidate(member, path[class_depth], given, "/".join(inner), ""))
    return placed, misplaced
