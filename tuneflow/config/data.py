"""How the archive becomes a train/val split: the `data` section of the config."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tuneflow.config.training import RESNET50_MIN_IMAGE_SIZE


class DataSettings(BaseModel):
    """How the archive becomes a train/val split."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] | None = Field(
        None,
        description="Class folders to train on, e.g. ['apple_pie', 'pizza']. Empty: every class in the archive.",
    )
    exclude_classes: list[str] | None = Field(
        None,
        description="Class folders to leave out, e.g. ['testpile'] (a stray folder of photos copied from other "
        "classes); every other class is used. Each must be a folder of the archive. Empty: none left out.",
    )
    val_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of each class held out for validation (0.2 gives 800/200 on Food-101's 1,000 per class).",
    )

    split_method: Literal["auto", "seeded", "archive"] = Field(
        "auto",
        description="'auto': keep the archive's own train/ + val/ folders when it has them, otherwise split by seed. "
        "'seeded': always split each class by seed (pooling any train/ + val/ folders). 'archive': use the "
        "archive's own split (train/ + val/ folders, or Food-101's meta/train.txt + meta/test.txt).",
    )
    train_per_class: int | None = Field(
        None,
        ge=1,
        description="Exact training images per class (800 on Food-101), with val_per_class; replaces val_fraction. "
        "Extra images are left out; a class with fewer than train_per_class + val_per_class usable images fails.",
    )
    val_per_class: int | None = Field(
        None, ge=1, description="Exact validation images per class (200 on Food-101), with train_per_class."
    )
    min_image_size: int = Field(
        RESNET50_MIN_IMAGE_SIZE,
        ge=1,
        le=4096,
        description="Images whose shorter side has fewer pixels are skipped as too small to learn from.",
    )
    max_uncompressed_gb: float = Field(
        50.0,
        gt=0,
        description="Refuse archives whose selected files expand to more than this many GB (zip-bomb guard; "
        "Food-101 is 5 GB).",
    )
    max_compression_ratio: float = Field(
        100.0,
        ge=1,
        description="Skip files over 1 MiB that expand more than this many times (zip-bomb guard; photos barely "
        "compress, about 1.0x).",
    )
    max_image_mb: float = Field(
        100.0, gt=0, description="Skip single files larger than this many MB (each image is checked in memory)."
    )
    name_encoding: str | None = Field(
        None,
        description="Encoding of file names in zips that do not mark them UTF-8, e.g. 'cp932' (Japanese Windows) "
        "or 'cp437'. Empty: detected (UTF-8, then Shift-JIS/cp932, then cp437).",
    )

    @field_validator("name_encoding")
    @classmethod
    def _known_encoding(cls, encoding: str | None) -> str | None:
        if not encoding or not encoding.strip():
            return None
        try:
            return codecs.lookup(encoding.strip()).name
        except LookupError:
            raise ValueError(
                f"name_encoding {encoding!r} is not an encoding Python knows; try 'cp932', 'cp437' or 'utf-8'"
            ) from None

    @model_validator(mode="after")
    def _not_both_chosen_and_left_out(self) -> DataSettings:
        both = sorted(set(self.classes or ()) & set(self.exclude_classes or ()))
        if both:
            raise ValueError(
                f"{both} is in both classes and exclude_classes; name each class in one of them (classes picks the "
                "classes to train on, exclude_classes leaves classes out of all the archive's)"
            )
        return self

    @model_validator(mode="after")
    def _counts_come_in_pairs(self) -> DataSettings:
        given = (self.train_per_class is not None, self.val_per_class is not None)
        if any(given) and not all(given):
            raise ValueError(
                f"train_per_class={self.train_per_class} and val_per_class={self.val_per_class}: set both "
                "(e.g. 800 and 200) or neither (then val_fraction splits each class)"
            )
        if all(given) and self.split_method == "archive":
            raise ValueError(
                "train_per_class/val_per_class choose a seeded split, but split_method='archive' keeps the "
                "archive's own split; use split_method='seeded' (or 'auto') with counts, or drop the counts"
            )
        return self

    @property
    def per_class_counts(self) -> tuple[int, int] | None:
        """(train, val) images per class when the split is by counts, else None (split by val_fraction)."""
        if self.train_per_class is None or self.val_per_class is None:
            return None
        return self.train_per_class, self.val_per_class

    @field_validator("classes", "exclude_classes")
    @classmethod
    def _each_class_once(cls, classes: list[str] | None, info: ValidationInfo) -> list[str] | None:
        names = [name.strip() for name in classes or () if name.strip()]
        if not names:
            return None
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{info.field_name} lists {duplicates} more than once; name each class once")
        return names

    @field_validator("classes")
    @classmethod
    def _at_least_two_classes(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(names) < 2:
            raise ValueError(f"classes={names} names 1 class; a classifier needs at least 2 (or leave it empty for all)")
        return names
