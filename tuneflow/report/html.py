"""report.html: one self-contained page (figures and thumbnails embedded as data: URIs) that opens anywhere.

`render_html` is a pure function of a ReportContent: what to show is decided by tuneflow.report.content.gather_report, the numbers and
sentences here, the markup in templates/report.html.j2 (and its report.css). The template environment escapes
every value it prints, so a class name, file name or source from an archive shows as text and never as markup.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Literal

import jinja2
import pandas as pd
from PIL import Image, ImageOps
from pydantic import BaseModel

from tuneflow.dataset.prepare import counts_table
from tuneflow.formatting import byte_size, number, percent, points
from tuneflow.records import PreparedDataset
from tuneflow.report.fonts import numbered_classes
from tuneflow.evaluation.metrics import Metrics, worst_first
from tuneflow.report.text import training_setup_text
from tuneflow.registry.promotion import PromotionDecision

# Above the table of the classes the figures call by number (tuneflow.report.fonts), in every report.
NUMBERED_CLASSES_NOTE = ("The figures call these classes by number: a character of their name (an emoji, a script "
                         "the figures' fonts lack) cannot be drawn there. The tables name them.")
THUMBNAIL_PX = 128
MISTAKES_SHOWN = 12
TYPICAL_PER_CLASS = 4
TEMPLATE = "report.html.j2"


@dataclass
class Thumbnail:
    uri: str
    caption: str
    detail: str


@dataclass
class ReportContent:
    """Everything the page shows, already read from the run folder."""

    run_id: str
    metrics: Metrics
    decision: PromotionDecision | None
    current_metrics: Metrics | None
    history: pd.DataFrame
    figures: dict[str, bytes]  # name -> PNG: curves, confusion, per_class, calibration, history
    mistakes: list[Thumbnail]
    typical: dict[str, list[Thumbnail]]
    dataset: PreparedDataset
    archive: BaseModel
    training: dict
    config: dict
    versions: list = field(default_factory=list)  # tuneflow.report.history.VersionRow of every model version, oldest first
    generated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_uri(path: Path, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of the image as a data: URI, upright; None when the file cannot be opened."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def meter_width(value: float) -> str:
    """The CSS width of a score's bar: the score as a share of the cell, clipped to 0-100%."""
    return f"{max(0.0, min(1.0, value)) * 100:.1f}%"


# A class taking more predictions than this share, well above its share of images, means the model has
# collapsed onto it: the usual sign of too little training or a learning rate that is too high.
DOMINANT_SHARE = 0.5


def findings(metrics: Metrics) -> list[str]:
    """Plain sentences about failure patterns a reader should not have to spot in the tables."""
    notes = []
    never = [name for name, m in metrics.per_class.items() if m.support and not m.predicted]
    if never:
        notes.append(f"Never predicted: {', '.join(never)} ({len(never)} of {len(metrics.classes)} classes).")
    for name, m in metrics.per_class.items():
        share = m.predicted / metrics.num_images
        if len(metrics.classes) > 2 and share > DOMINANT_SHARE and share > 2 * m.support / metrics.num_images:
            notes.append(f"{name} takes {percent(share, 0)} of all predictions but is {percent(m.support / metrics.num_images, 0)} "
                         "of the images: the model has mostly learned to answer one class.")
    absent = [name for name, m in metrics.per_class.items() if not m.support]
    if absent:
        notes.append(f"No validation image of {', '.join(absent)}: nothing is known about how well it is recognised.")
    return notes


def headline_top_k(metrics: Metrics) -> int | None:
    """The k worth quoting next to accuracy: 3, or 2 for three classes; None when only top-1 means anything."""
    k = min(3, len(metrics.classes) - 1)
    return k if k >= 2 and k in metrics.top_k_accuracy else None


@dataclass
class Card:
    """One number of the headline row: a label, the value, a line of context; tone colours it."""

    label: str
    value: str
    note: str = ""
    tone: Literal["", "primary", "good", "bad"] = ""
    value_id: str | None = None  # an element id for the value, for tests and readers' bookmarks


def change_card(decision: PromotionDecision | None) -> Card:
    """How the new model compares with the model in use, on the validation photos that one never trained on."""
    if decision is None:
        return Card("vs model in use", "—", "no promotion step ran")
    if decision.baseline is None:
        return Card("vs model in use", "first", "no model was in use yet")
    if decision.comparison is None:
        return Card("vs model in use", "n/a", f"{decision.baseline.version} has other classes")
    change = decision.accuracy_change
    if change is None:
        return Card("vs model in use", "n/a", f"{decision.baseline.version} trained on all these photos")
    paired = decision.comparison
    return Card("vs model in use", points(change),
                f"{percent(paired.old_accuracy)} for {decision.baseline.version} on {paired.compared} photos it "
                "never trained on",
                "good" if change > 0 else ("bad" if change < 0 else ""))


def headline_cards(content: ReportContent) -> list[Card]:
    metrics = content.metrics
    k = headline_top_k(metrics)
    return [
        Card("validation accuracy", percent(metrics.accuracy), f"{metrics.num_correct} of {metrics.num_images} images",
             "primary", value_id="headline-accuracy"),
        change_card(content.decision),
        *([Card(f"top-{k} accuracy", percent(metrics.top_k_accuracy[k]), f"true class among the {k} most probable")]
          if k else []),
        Card("macro F1", number(metrics.macro.f1), f"over {sum(1 for m in metrics.per_class.values() if m.support)} classes"),
        Card("calibration error", percent(metrics.calibration.expected_calibration_error),
             f"mean confidence {percent(metrics.calibration.mean_confidence)}"),
    ]


def calibration_verdict(metrics: Metrics) -> Literal["fair", "under-confident", "over-confident"]:
    """Whether the model's confidence can be taken at face value: within 5 points of its accuracy."""
    gap = metrics.calibration.accuracy - metrics.calibration.mean_confidence
    if abs(gap) < 0.05:
        return "fair"
    return "under-confident" if gap > 0 else "over-confident"


# Friendlier labels for fields we know; any other field shows its own name.
LABELS = {"path": "local copy", "md5": "archive MD5", "size_bytes": "archive size", "drive_file_id": "Drive file ID",
          "drive_revision": "Drive revision", "root": "folder", "files_seen": "files in archive"}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def field_text(value) -> str | list[str] | None:
    """A field value of a data record as text: None when empty, dicts as a key: value list, lists one per line."""
    if value is None or value == {} or value == []:
        return None
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class RecordRow:
    label: str
    description: str | None
    value: str | list[str] | None


def record_rows(record: BaseModel, skip: set[str] = frozenset()) -> list[RecordRow]:
    """Every field of a pydantic record, labelled, with the field's description (if any) for a tooltip."""
    fields = type(record).model_fields
    rows = []
    for name, value in record.model_dump(mode="json").items():
        if name in skip:
            continue
        description = fields[name].description if name in fields else None
        # the exact count too: it is what a reader compares with the size Drive or `ls -l` gives
        shown = (f"{byte_size(value)} ({value:,} bytes)" if name.endswith("_bytes") and isinstance(value, int)
                 else field_text(value))
        rows.append(RecordRow(label(name), description, shown))
    return rows


@dataclass
class Table:
    """A table as text: the header, rows of cells, an optional total row; `numeric` says which columns align right."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    total: list[str] | None = None


def counts_html_table(dataset: PreparedDataset) -> Table:
    """The table of images per class and split that report.md and the dataset artifact show, as HTML cells."""
    counts = counts_table(dataset)
    rows = [[str(name), *(f"{v:,}" for v in row)] for name, row in counts.iterrows()]
    return Table([counts.index.name, *(str(c) for c in counts.columns)], rows[:-1],
                 [False] + [True] * len(counts.columns), total=rows[-1])


def history_table(history: pd.DataFrame) -> Table:
    """history.csv, one row per epoch: the epoch and phase as they are, losses and accuracies to 4 decimals (— where
    a value is missing)."""
    columns = [c for c in ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy") if c in history]
    rows = [
        [str(row[c]) if c in ("epoch", "phase") else number(row[c], ".4f") for c in columns]
        for _, row in history[columns].iterrows()
    ]
    return Table([c.replace("_", " ") for c in columns], rows, [c != "phase" for c in columns])


@cache
def _templates() -> jinja2.Environment:
    # autoescape=True rather than select_autoescape by file extension: every template here is HTML, and a
    # template whose name missed the list would print archive text unescaped. StrictUndefined: a misspelt name
    # fails the report instead of leaving a blank where a number belongs.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("tuneflow.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, points=points, ratio=number, meter_width=meter_width)
    return environment


def no_thumbnails_text(metrics: Metrics) -> str:
    """What the mistakes section says when it has no thumbnail to show: either there was no mistake, or there were
    some whose photos could not be opened (the run's dataset folder was cleaned up), never the one for the other."""
    wrong = metrics.num_images - metrics.num_correct
    if wrong == 0:
        return "No mistakes: every validation image was classified correctly."
    return (f"{wrong:,} of {metrics.num_images:,} validation images were misclassified, but their photos could not be "
            "opened (the run's dataset folder was cleaned up or damaged), so no thumbnail is shown; the most "
            "confused classes above and predictions.csv list them.")


def render_html(content: ReportContent) -> str:
    """The whole page."""
    metrics = content.metrics
    return _templates().get_template(TEMPLATE).render(
        content=content,
        metrics=metrics,
        decision=content.decision,
        current=content.current_metrics,
        source=str(getattr(content.archive, "source", "")),
        cards=headline_cards(content),
        ranked=worst_first(metrics),
        numbered=numbered_classes(metrics.classes),
        numbered_note=NUMBERED_CLASSES_NOTE,
        no_thumbnails=no_thumbnails_text(metrics),
        findings=findings(metrics),
        # png_uri builds a data: URI of base64 text, which has nothing to escape: it needs no |safe.
        figures={name: png_uri(png) for name, png in content.figures.items()},
        verdict=calibration_verdict(metrics),
        counts=counts_html_table(content.dataset),
        provenance=record_rows(content.archive),
        preparation=record_rows(content.dataset, skip={"classes", "counts"}),
        history=history_table(content.history),
        settings=[(name.replace("_", " "), field_text(value)) for name, value in content.training.items()],
        training_setup=training_setup_text(content.training),
        config_json=json.dumps(content.config, indent=2),
    )
