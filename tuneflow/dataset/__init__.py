"""Turning a dataset zip into a checked train/val folder tree: scan, split, extract; `prepare` runs the whole step.

Plain Python, no Prefect: the prepare task (tasks/prepare.py) calls `prepare.prepare_dataset` and publishes.
"""

# Why a file in the archive was not used: the `reason` column of manifest.csv, explained in the run's report.
# "skipped" files were meant to be used but could not be; "ignored" ones were never meant to be.
REASONS = {
    # skipped before reading a byte: decided from the zip's directory
    "unsafe-path": "name climbs out of the archive (../) or is absolute",
    "symlink": "a symbolic link, never followed",
    "special-file": "a device, pipe or other non-regular file",
    "encrypted": "password-protected entry",
    "unsupported-compression": "compressed with a method Python cannot read (e.g. Deflate64)",
    "unsupported-format": "a photo format Pillow cannot read (e.g. HEIC); export as JPEG",
    "too-large": "file or picture over the size limit (max_image_mb, 89 Mpx)",
    "zip-bomb": "expands far more than a photo can (max_compression_ratio)",
    # skipped after reading
    "read-error": "damaged inside the archive (CRC mismatch, bad header, size mismatch)",
    "not-an-image": "not an image, whatever its name says",
    "corrupt": "image header or data damaged",
    "truncated": "image data cut off before its end",
    "too-small": "shorter side under min_image_size",
    "duplicate": "same bytes as a file that was kept (or skipped)",
    "label-conflict": "the same photo under two or more classes: its label is unknown, so no copy is used",
    # ignored
    "noise": "system or hidden file (__MACOSX/, .DS_Store, Thumbs.db)",
    "not-an-image-file": "not an image type by its extension (text, video)",
    "not-in-class-folder": "not inside a class folder",
    "outside-split-folders": "outside the train/ and val/ folders used",
    "class-not-selected": "class not in data.classes, or in data.exclude_classes",
    "not-in-archive-split": "not listed in Food-101's meta/train.txt or meta/test.txt",
    "over-per-class-count": "beyond train_per_class + val_per_class for its class",
}
