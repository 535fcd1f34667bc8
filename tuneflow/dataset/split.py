"""Split one class's images into train and val: by their content and the seed, by fraction or by exact counts.

A photo's side follows from its content, not from its position in the archive: each class is ranked by a hash
of every photo's content keyed by the seed, and the first val_size(...) of that ranking are held out. So as a
dataset grows week after week a photo stays where it was: adding photos can move at most as many photos from
train to val as the validation count grows by (about val_fraction x the photos added), while shuffling a class
(the previous design) moved about half of the validation set into what the model before had trained on, and the
champion was then graded on photos it had memorised.
"""

from __future__ import annotations

import hashlib
import math
import shlex
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)

MIN_IMAGES_PER_CLASS = 2  # one to train on and one to validate with


class SplitError(ValueError):
    """A class cannot be split as asked; the message names the class, its count and the fix."""


def leave_out_hint(label: str, listed: bool = False) -> str:
    """How to train without a class, in the command line's words and the config's (a flow or deployment).

    listed: the classes were named one by one (data.classes), so leaving one out means naming it no more.
    """
    if listed:
        return "drop it from --classes (data.classes in a flow or deployment)"
    return f"--exclude-classes {shlex.quote(label)} (data.exclude_classes={[label]!r} in a flow or deployment)"


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


def content_rank(content: str, seed: int) -> bytes:
    """A photo's place in its class's ranking: its content hashed with the seed as the key."""
    return hashlib.blake2b(content.encode(), digest_size=16, key=f"tuneflow-split/{seed}".encode()).digest()


def content_order(items: Sequence[Item], seed: int, content_of: Callable[[Item], str] = str) -> list[Item]:
    """The order in which a class's images are dealt: by content_rank of content_of(item); ties keep given order.

    The order of one photo relative to another depends only on their two contents and the seed, never on the
    other photos, their names or their order in the archive, so a class's split is the same however its archive
    was zipped, and adding photos to a class (or another class) leaves every other photo's rank as it was.
    """
    return sorted(items, key=lambda item: content_rank(content_of(item), seed))


def deal(
    ordered: Sequence[Item],
    label: str,
    val_fraction: float,
    counts: tuple[int, int] | None = None,
    why: str = "",
    listed: bool = False,
) -> Split[Item]:
    """Deal images, already in content order, to val first and then train.

    In errors, `why` explains the count and `listed` says the classes were named one by one (see leave_out_hint).
    """
    count = len(ordered)
    have = f"class {label!r} has {count} usable image{'s' if count != 1 else ''}{why}"
    if counts is not None:
        train_count, val_count = counts
        needed = train_count + val_count
        if count < needed:
            raise SplitError(
                f"{have}; train_per_class={train_count} + val_per_class={val_count} needs {needed}. "
                f"Lower the counts, add photos to {label!r}, split by val_fraction instead, or leave the class out: "
                f"{leave_out_hint(label, listed)}"
            )
        return Split(list(ordered[val_count:needed]), list(ordered[:val_count]), list(ordered[needed:]))
    if count < MIN_IMAGES_PER_CLASS:
        raise SplitError(
            f"{have}; need at least {MIN_IMAGES_PER_CLASS} to split it into train and val. Add photos to "
            f"{label!r}, or leave the class out: {leave_out_hint(label, listed)}"
        )
    val = val_size(count, val_fraction)
    return Split(list(ordered[val:]), list(ordered[:val]), [])
