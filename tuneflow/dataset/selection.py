"""Choosing from a scanned catalog what the dataset will hold: the classes wanted (and those left out), each
image's output name, the side Food-101's own split lists put it on, and the size guard before anything is read."""

from __future__ import annotations

import difflib
import zipfile
from dataclasses import replace

from tuneflow.config import DataSettings
from tuneflow.dataset.archive import (
    ACCEPTED_LAYOUTS,
    ENCRYPTED_FLAG,
    MAX_META_BYTES,
    STEM_MAX_BYTES,
    ArchiveError,
    Candidate,
    Catalog,
    GivenSplit,
    PassedOver,
    decode_names,
    split_member_path,
    suffix_of,
)


def name_files(catalog: Catalog, per_side: bool) -> Catalog:
    """Give each image an output name built from its path inside the class folder, never from the raw name.

    Names are unique within a class, case-insensitively (the folder may be copied to macOS or Windows), or within
    a class and side when the archive's own split is kept, so train/pizza/1.jpg and val/pizza/1.jpg keep theirs.
    """
    taken: set[tuple[str, str | None, str]] = set()
    named = []
    for candidate in sorted(catalog.candidates, key=lambda c: (c.label, c.member.path, c.member.index)):
        inner = candidate.inner
        stem = inner[: len(inner) - len(suffix_of(inner))].replace("/", "__").lstrip(". ") or "image"
        if len(stem) > STEM_MAX_BYTES // 4:  # only a longer name can pass the byte limit
            stem = stem.encode("utf-8")[:STEM_MAX_BYTES].decode("utf-8", "ignore")
        side = candidate.given_split if per_side else None
        unique, number = stem, 1
        while (candidate.label, side, unique.casefold()) in taken:
            number += 1
            unique = f"{stem}-{number}"
        taken.add((candidate.label, side, unique.casefold()))
        named.append(Candidate(candidate.member, candidate.label, candidate.given_split, inner, unique))
    return replace(catalog, candidates=named)


def select_classes(catalog: Catalog, wanted: list[str] | None, left_out: list[str] | None = None) -> Catalog:
    """Keep the wanted classes (all when None) but those left out; unknown names fail with the available ones."""
    available = catalog.classes
    check_known(wanted, available, "")
    check_known(left_out, available, "exclude_classes: ")
    chosen = set(wanted or available) - set(left_out or ())
    if len(chosen) < 2:
        if wanted is None and not left_out:
            raise ArchiveError(
                f"the archive has only the class {available}; a classifier needs at least 2 class folders "
                f"(layout found: {catalog.layout})\n{ACCEPTED_LAYOUTS}"
            )
        raise ArchiveError(
            f"exclude_classes={left_out} leaves {sorted(chosen)} of the archive's {available}; a classifier needs "
            "at least 2 classes: leave fewer out"
        )
    why = {
        label: f"class {label!r} in exclude_classes" if label in (left_out or ()) else f"class {label!r} not in classes"
        for label in available
    }
    candidates = [candidate for candidate in catalog.candidates if candidate.label in chosen]
    dropped = [
        PassedOver(candidate.member, "ignored", "class-not-selected", why[candidate.label], candidate.label)
        for candidate in catalog.candidates
        if candidate.label not in chosen
    ]
    return replace(catalog, candidates=candidates, passed_over=catalog.passed_over + dropped)


def check_known(names: list[str] | None, available: list[str], setting: str) -> None:
    """Fail on class names the archive does not have, listing the ones it has and the closest match."""
    unknown = [name for name in names or () if name not in available]
    if not unknown:
        return
    hints = {name: closest_class(name, available) for name in unknown}
    if len(unknown) == 1:
        name = unknown[0]
        what = f"class {name!r} is not"
        hint = f" Did you mean {hints[name]!r}?" if hints[name] else ""
    else:
        what = f"classes {', '.join(map(repr, unknown))} are not"
        guesses = [f"{close!r} for {name!r}" for name, close in hints.items() if close]
        hint = f" Did you mean {', '.join(guesses)}?" if guesses else ""
    raise ArchiveError(f"{setting}{what} in the archive; it has {available}.{hint}")


def closest_class(name: str, available: list[str]) -> str | None:
    same_but_case = [label for label in available if label.casefold() == name.casefold()]
    return (same_but_case or difflib.get_close_matches(name, available, n=1, cutoff=0.6) or [None])[0]


def check_total_size(catalog: Catalog, settings: DataSettings) -> None:
    """Refuse, before decompressing anything, an archive whose chosen files would expand past the limit."""
    total = sum(candidate.member.size for candidate in catalog.candidates)
    limit = settings.max_uncompressed_gb * 1e9
    if total > limit:
        raise ArchiveError(
            f"the chosen images expand to {total / 1e9:,.1f} GB, over max_uncompressed_gb="
            f"{settings.max_uncompressed_gb:g} (zip-bomb guard); if this archive is genuine, raise "
            "data.max_uncompressed_gb, or pick fewer classes"
        )


def read_food101_split(archive: zipfile.ZipFile, catalog: Catalog) -> dict[str, GivenSplit]:
    """Map 'class/stem' to the side Food-101's meta/train.txt and meta/test.txt put it on."""
    sides: dict[str, GivenSplit] = {}
    infos = archive.infolist()
    names, _ = decode_names(infos, catalog.name_encoding)
    by_path = {"/".join(split_member_path(name)[0]): info for name, info in zip(names, infos)}
    for file_name, side in (("train.txt", "train"), ("test.txt", "val")):
        info = by_path.get(f"{catalog.top}meta/{file_name}")
        if info is None:
            raise ArchiveError(
                f"split_method='archive' needs Food-101's {catalog.top}meta/{file_name}, which this archive lacks; "
                "use split_method='seeded'"
            )
        if info.file_size > MAX_META_BYTES or info.flag_bits & ENCRYPTED_FLAG:
            raise ArchiveError(f"{info.filename} is not a plain Food-101 split list; use split_method='seeded'")
        for line in archive.read(info).decode("utf-8", "replace").splitlines():
            if line.strip():
                sides[line.strip()] = side
    return sides


def apply_given_split(catalog: Catalog, sides: dict[str, GivenSplit]) -> Catalog:
    """Put Food-101 images on the side its meta lists name; images the lists leave out are ignored."""
    candidates, unlisted = [], []
    for candidate in catalog.candidates:
        side = sides.get(f"{candidate.label}/{candidate.inner.rsplit('.', 1)[0]}")  # lines read "pizza/1001116"
        if side is None:
            unlisted.append(
                PassedOver(candidate.member, "ignored", "not-in-archive-split", "not listed in meta/train.txt or "
                           "meta/test.txt", candidate.label)
            )
        else:
            candidates.append(replace(candidate, given_split=side))
    return replace(catalog, candidates=candidates, passed_over=catalog.passed_over + unlisted)
