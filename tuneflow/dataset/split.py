"""Split one class's images into train and val: deterministic for a seed, by fraction or by exact counts."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)

MIN_IMAGES_PER_CLASS = 2  # one to train on and one to validate with


class SplitError(ValueError):
    """A class cannot be split as asked; the message names the class, its count and the fix."""


@dataclass(frozen=True)
class Split(Generic[Item]):
    """One class's images dealt into train and val; `unused` are left out when splitting by exact counts."""

    train: list[Item]
    val: list[Item]
    unused: list[Item]


def val_size(count: int, val_fraction: float) -> int:
    """Validation images for a class of `count`: the nearest whole number (halves up), and at least one on each side.

    1,000 at 0.2 gives 200; 999 gives 200 (199.8) and leaves 799 to train.
    """
    return min(count - 1, max(1, math.floor(count * val_fraction + 0.5)))


def seeded_order(items: Sequence[Item], seed: int, label: str) -> list[Item]:
    """The order in which a class's images are dealt: their given order shuffled by a generator seeded per class.

    Seeding per class keeps each class's split unchanged when other classes are added, removed or resized.
    """
    ordered = list(items)
    random.Random(f"{seed}/{label}").shuffle(ordered)
    return ordered


def deal(
    ordered: Sequence[Item], label: str, val_fraction: float, counts: tuple[int, int] | None = None, why: str = ""
) -> Split[Item]:
    """Deal images, already in seeded order, to val first and then train; `why` explains the count in errors."""
    count = len(ordered)
    have = f"class {label!r} has {count} usable image{'s' if count != 1 else ''}{why}"
    if counts is not None:
        train_count, val_count = counts
        needed = train_count + val_count
        if count < needed:
            raise SplitError(
                f"{have}; train_per_class={train_count} + val_per_class={val_count} needs {needed}. "
                f"Lower the counts, add photos to {label!r}, or split by val_fraction instead"
            )
        return Split(list(ordered[val_count:needed]), list(ordered[:val_count]), list(ordered[needed:]))
    if count < MIN_IMAGES_PER_CLASS:
        raise SplitError(
            f"{have}; need at least {MIN_IMAGES_PER_CLASS} to split it into train and val. Add photos to "
            f"{label!r} or leave it out of classes"
        )
    val = val_size(count, val_fraction)
    return Split(list(ordered[val:]), list(ordered[:val]), [])
