"""Extract a catalogued archive straight into root/<split>/<class>/, deduplicated and split exactly.

The split is planned before anything is read, so each image is written once, straight to its side. Planning
first has a catch: some files only turn out to be unusable (corrupt, too small) when read, and the counts must
still come out exact (200 of 999 usable images, not 200 of the 1,000 planned). So the split is settled once more
after reading, from the same content order restricted to the usable images, and the few files that change side
are renamed (a rename in the same folder tree, never a copy). In count mode, images past the count are not read
at all unless earlier ones fail (files that repeat another's CRC-32 and size excepted: see below).

Identical files are found by CRC-32 and size from the central directory (free), then read and compared by
SHA-256 before the split is planned (settle_copies): one copy of each photo is kept, so no image can be on both
sides of the split, and a photo filed under two classes is used in neither.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tuneflow.config import DataSettings
from tuneflow.dataset.archive import Candidate, Catalog, GivenSplit
from tuneflow.dataset.extract import Job, Outcome, extract_jobs
from tuneflow.dataset.split import SplitError, content_order, deal, leave_out_hint

SPLITS: tuple[GivenSplit, ...] = ("train", "val")
MANIFEST_COLUMNS = ["path", "class", "split", "status", "reason", "detail", "size", "sha256", "width", "height", "file"]


@dataclass
class Built:
    """The dataset written under root: images per side and class, and one manifest row per file in the archive."""

    counts: dict[str, dict[str, int]]
    table: pd.DataFrame  # the manifest
    duplicates: int
    converted: int
    # Photos found under more than one class, by the classes they are under ("apple_pie / pizza"): left out of all.
    label_conflicts: dict[str, int] = field(default_factory=dict)


@dataclass
class Extraction:
    """State of one archive's extraction: which files repeat others, what was read, where it was written."""

    archive: Path
    infos: list[zipfile.ZipInfo]
    catalog: Catalog
    settings: DataSettings
    seed: int
    seeded: bool  # split by seed; otherwise keep the archive's own split
    root: Path
    workers: int | None = None
    candidates: dict[int, Candidate] = field(init=False)
    order: dict[str, list[int]] = field(init=False)  # per class, the order its images are dealt in
    unread: set[int] = field(init=False)  # files that may still be written
    hashes: dict[int, Outcome] = field(default_factory=dict)  # files read only to compare them with their copies
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # files read to be written
    duplicate_of: dict[int, int] = field(default_factory=dict)  # a copy -> the copy that stands for the photo
    conflict_of: dict[int, int] = field(default_factory=dict)  # a copy under two classes -> the first of its copies
    conflicts: dict[int, tuple[int, ...]] = field(default_factory=dict)  # the first -> all copies
    conflicting_labels: dict[int, tuple[str, ...]] = field(default_factory=dict)  # the first -> their classes

    def __post_init__(self) -> None:
        self.candidates = {candidate.member.index: candidate for candidate in self.catalog.candidates}
        by_class: dict[str, list[int]] = defaultdict(list)
        for candidate in sorted(self.catalog.candidates, key=lambda c: (c.member.path, c.member.index)):
            by_class[candidate.label].append(candidate.member.index)
        self.order = {
            label: content_order(indexes, self.seed, self.content_of) if self.seeded else indexes
            for label, indexes in sorted(by_class.items())
        }
        self.unread = set(self.candidates)

    @property
    def listed(self) -> bool:
        """Whether the classes were named one by one, which changes how an error says to leave one out."""
        return self.settings.classes is not None

    def content_of(self, index: int) -> str:
        """A file's content as the zip's directory states it, so the split is planned before a byte is read.

        CRC-32 and size of the uncompressed bytes: the same photo has the same value in any archive, whatever its
        name, folder or place in the zip, and two different photos of one class share it with odds of about one
        in 4 billion per pair of equal size (then the two keep their order by name). Using the SHA-256 instead
        would mean reading every file before writing any: count mode could no longer leave extra images unread.
        """
        member = self.candidates[index].member
        return f"{member.crc:08x}/{member.size}"

    def run(self) -> Built:
        for side in SPLITS:
            for label in self.order:
                (self.root / side / label).mkdir(parents=True, exist_ok=True)
        self.settle_copies()
        wanted = self.first_round()
        while wanted:
            self.read(wanted)
            wanted = self.next_round()
        return self.finish()

    def settle_copies(self) -> None:
        """Before the split, read every file that shares its CRC-32 and size with another and group them by SHA-256.

        Each photo is then settled once, whatever copy sorts or sits first and however many of its files a class
        needs: copies in one class are one photo (the first copy, the train one when the archive is split, stands
        for it); copies under two or more classes are a photo whose label is unknown, and none is used; a copy
        damaged in the zip is no evidence of what it holds and stays a read-error skip. Copies are few (58 files
        of Food-101's 101,000), so reading them once more when they are written costs nothing worth saving.
        """
        suspected: dict[tuple[int, int], list[int]] = defaultdict(list)
        for candidate in sorted(self.candidates.values(), key=self.preference):
            suspected[candidate.member.crc, candidate.member.size].append(candidate.member.index)
        suspects = [index for group in suspected.values() if len(group) > 1 for index in group]
        jobs = [Job.for_member(self.infos[index], index, None) for index in suspects]
        for outcome in extract_jobs(self.archive, self.root, jobs, self.settings.min_image_size, self.workers):
            self.hashes[outcome.index] = outcome
        groups: dict[str, list[int]] = defaultdict(list)
        for index in suspects:  # in order of preference
            outcome = self.hashes[index]
            if outcome.sha256 is None:
                self.outcomes[index] = outcome  # unreadable: its read-error is final
                self.unread.discard(index)
            else:
                groups[outcome.sha256].append(index)
        for first, *copies in groups.values():
            labels = tuple(sorted({self.candidates[index].label for index in (first, *copies)}))
            if len(labels) > 1:
                self.conflicting_labels[first], self.conflicts[first] = labels, (first, *copies)
                self.conflict_of.update((index, first) for index in (first, *copies))
                self.unread.discard(first)
            self.duplicate_of.update((copy, first) for copy in copies if len(labels) == 1)
            self.unread.difference_update(copies)

    def preference(self, candidate: Candidate) -> tuple[int, str, int]:
        """Which copy of a photo stands for it: the train copy of an archive split, then the first by name."""
        # Keeping the train copy means a val file that repeats a train file is the one dropped.
        val_copy = not self.seeded and candidate.given_split == "val"
        return int(val_copy), candidate.member.path, candidate.member.index

    def first_round(self) -> dict[int, GivenSplit]:
        """Where each file would go if every file were usable."""
        wanted: dict[int, GivenSplit] = {}
        counts = self.settings.per_class_counts
        for label, order in self.order.items():
            firsts = [index for index in order if index in self.unread]
            if not self.seeded:
                wanted.update((index, self.candidates[index].given_split) for index in firsts)
                continue
            try:
                split = deal(firsts, label, self.settings.val_fraction, counts)
            except SplitError:
                split = None  # too few even before reading: settled, with the full story, in finish()
            if split is None:
                wanted.update((index, "train") for index in firsts)
                continue
            wanted.update((index, "val") for index in split.val)
            wanted.update((index, "train") for index in split.train)
        return wanted

    def next_round(self) -> dict[int, GivenSplit]:
        """In count mode, stand-ins for files that proved unusable (every other file was wanted at once)."""
        counts = self.settings.per_class_counts
        if counts is None:
            return {}
        wanted: dict[int, GivenSplit] = {}
        for label, order in self.order.items():
            usable = sum(1 for index in order if self.usable(index))
            waiting = [index for index in order if index in self.unread][: max(0, sum(counts) - usable)]
            wanted.update((index, "train") for index in waiting)
        return wanted

    def read(self, wanted: dict[int, GivenSplit]) -> None:
        """Write the wanted files to their sides, in one pass over the archive."""
        jobs = []
        for index, side in wanted.items():
            candidate = self.candidates[index]
            jobs.append(Job.for_member(self.infos[index], index, f"{side}/{candidate.label}/{candidate.stem}"))
        self.unread.difference_update(wanted)
        for outcome in extract_jobs(self.archive, self.root, jobs, self.settings.min_image_size, self.workers):
            self.outcomes[outcome.index] = outcome

    def conflict_detail(self, index: int) -> str:
        first = self.conflict_of[index]
        elsewhere = [self.candidates[other].member.path for other in self.conflicts[first] if other != index]
        classes = " and ".join(repr(label) for label in self.conflicting_labels[first])
        return (
            f"the same photo is filed under {classes} (also {', '.join(elsewhere)}); its label is unknown, so it "
            "is used in none of them"
        )

    def usable(self, index: int) -> bool:
        outcome = self.outcomes.get(index)
        return outcome is not None and outcome.file is not None

    def finish(self) -> Built:
        """Settle the split from the usable files, move the few that change side, and describe every file."""
        counts = self.settings.per_class_counts
        final: dict[int, GivenSplit] = {}
        unused: set[int] = set()
        for label, order in self.order.items():
            usable = [index for index in order if self.usable(index)]
            if self.seeded:
                split = deal(
                    usable, label, self.settings.val_fraction, counts, self.explain_count(order), self.listed
                )
                unused.update(split.unused)
                final.update((index, "train") for index in split.train)
                final.update((index, "val") for index in split.val)
            else:
                for side in SPLITS:
                    if not any(self.candidates[index].given_split == side for index in usable):
                        raise SplitError(
                            f"class {label!r} has no usable {side} images in the archive's own split"
                            f"{self.explain_count(order)}; add some, set split_method='seeded' to split each "
                            f"class by seed, or leave the class out: {leave_out_hint(label, self.listed)}"
                        )
                final.update((index, self.candidates[index].given_split) for index in usable)
        for index in unused:
            os.unlink(self.root / self.outcomes[index].file)
        for index, side in final.items():
            written = self.outcomes[index].file
            moved = f"{side}/{self.candidates[index].label}/{written.rsplit('/', 1)[1]}"
            if moved != written:
                os.rename(self.root / written, self.root / moved)
                self.outcomes[index] = self.outcomes[index]._replace(file=moved)
        return self.describe(final, unused)

    def explain_count(self, order: list[int]) -> str:
        reasons = Counter(self.skip_reason(index) for index in order if not self.usable(index))
        reasons.pop(None, None)
        if not reasons:
            return ""
        listed = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return f" of {len(order)} files ({sum(reasons.values())} skipped: {listed})"

    def skip_reason(self, index: int) -> str | None:
        if index in self.conflict_of:
            return "label-conflict"
        if index in self.duplicate_of:
            return "duplicate"
        outcome = self.outcomes.get(index)
        return outcome.reason if outcome is not None else None

    def describe(self, final: dict[int, GivenSplit], unused: set[int]) -> Built:
        """One manifest row per file in the archive, in MANIFEST_COLUMNS order, and the counts per side and class."""
        rows = [
            (item.member.path, item.label, None, item.status, item.reason, item.detail, item.member.size,
             None, None, None, None)
            for item in self.catalog.passed_over
        ]  # fmt: skip
        counts = {side: {label: 0 for label in self.order} for side in SPLITS}
        converted = 0
        over_count = f"class already has train_per_class + val_per_class = {sum(self.settings.per_class_counts or ())}"
        for index, candidate in self.candidates.items():
            member, label = candidate.member, candidate.label
            outcome = self.outcomes.get(index) or self.hashes.get(index)
            sha256, width, height = outcome[1:4] if outcome else (None, None, None)
            if index in final:
                side = final[index]
                counts[side][label] += 1
                converted += bool(outcome.detail)
                rows.append((member.path, label, side, "kept", None, outcome.detail, member.size, sha256, width,
                             height, outcome.file))  # fmt: skip
                continue
            side = candidate.given_split
            if index in self.conflict_of:
                status, reason, detail = "skipped", "label-conflict", self.conflict_detail(index)
            elif index in self.duplicate_of:
                first = self.duplicate_of[index]
                original = self.outcomes.get(first)
                if first in final:
                    fate = f"kept as {original.file}"
                elif original is None or first in unused:
                    fate = f"not used: {over_count} images"
                else:
                    fate = f"skipped: {original.reason}"
                status, reason = "skipped", "duplicate"
                detail = f"same bytes as {self.candidates[first].member.path} ({fate})"
                width, height = (original.width, original.height) if original else (None, None)
            elif index in unused or outcome is None:
                status, reason, detail = "ignored", "over-per-class-count", f"{over_count} images"
            else:
                status, reason, detail = "skipped", outcome.reason, outcome.detail
            rows.append((member.path, label, side, status, reason, detail, member.size, sha256, width, height, None))
        table = pd.DataFrame.from_records(rows, columns=MANIFEST_COLUMNS)
        table = table.astype({"width": "Int64", "height": "Int64"})
        table = table.sort_values("path", kind="stable", ignore_index=True)
        conflicts = Counter(" / ".join(labels) for labels in self.conflicting_labels.values())
        return Built(counts, table, len(self.duplicate_of), converted, dict(sorted(conflicts.items())))


def build_dataset(
    archive: Path,
    infos: list[zipfile.ZipInfo],
    catalog: Catalog,
    settings: DataSettings,
    seed: int,
    seeded: bool,
    root: Path,
    workers: int | None = None,
) -> Built:
    """Write the catalogued images into root/train/<class>/ and root/val/<class>/ and describe every file."""
    return Extraction(archive, infos, catalog, settings, seed, seeded, root, workers).run()
