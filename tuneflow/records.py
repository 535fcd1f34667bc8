"""The records one step hands to the next: small, typed, JSON-serialisable, safe to keep in Prefect's results.

They live in the library, not next to the tasks that return them, so that the training process, the CLI and the
tests can read and write them without importing Prefect. This module imports nothing heavier than pydantic.
(PromotionDecision stays with the promotion rules in tuneflow.registry.promotion.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class PreparedDataset(BaseModel):
    """Where the prepared images are and what went into them: a small record, safe to keep in Prefect."""

    root: Path = Field(description="Holds train/<class>/<file> and val/<class>/<file>.")
    classes: list[str] = Field(description="Class names, sorted.")
    counts: dict[str, dict[str, int]] = Field(description='Images per split and class: {"train": {class: n}, ...}.')
    layout: Literal["food-101", "split-folders", "class-folders"] = Field(
        "class-folders", description="How the archive was organised."
    )
    split_method: Literal["seeded", "archive"] = Field(
        "seeded", description="'seeded': split here by seed; 'archive': the archive's own split, as given."
    )
    manifest: Path | None = Field(None, description="CSV with one row per file in the archive.")
    files_seen: int = Field(0, ge=0, description="Files in the archive (folders not counted).")
    skipped: dict[str, int] = Field(default_factory=dict, description="Files that could not be used, by reason.")
    ignored: dict[str, int] = Field(default_factory=dict, description="Files not meant to be used, by reason.")
    duplicates: int = Field(0, ge=0, description="Files dropped because the same bytes were kept elsewhere.")
    label_conflicts: dict[str, int] = Field(
        default_factory=dict,
        description="Photos found under more than one class, by those classes ('a / b'); none of their copies is used.",
    )
    converted: int = Field(0, ge=0, description="Images re-encoded to RGB JPEG/PNG or turned upright.")
    notes: list[str] = Field(default_factory=list, description="Things about the data a user should know.")
    reused_from: Path | None = Field(None, description="The cached preparation this run reused, if any.")
    cache_entry: Path | None = Field(
        None, description="The cached preparation this dataset's files are hard links to (made or reused), if any."
    )

    @property
    def total(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())


class TrainedModel(BaseModel):
    """Where the trained model and its history were written, and how training went."""

    model_path: Path
    classes: list[str]
    history_path: Path
    epochs_run: int
    resumed_from_epoch: int
    train_images: int
    seconds: float
    train_images_per_second: float
    devices: list[str]
    replicas: int
    precision: str = Field(description="The Keras dtype policy training used (what precision=auto chose).")
    xla_applied: bool | None = Field(
        None, description="Whether XLA compiled the training step, read back from the compiled model; None in "
        "records written before it was."
    )
    xla_reason: str = Field("", description="Why XLA was or was not applied.")


class EvalResult(BaseModel):
    """Headline numbers and where the full predictions and metrics are."""

    accuracy: float
    num_images: int
    predictions_path: Path
    metrics_path: Path


class ReportFiles(BaseModel):
    """Where the report went."""

    html: Path
    markdown: Path


class RunSummary(BaseModel):
    """What a retraining run produced: the flow's return value."""

    run_dir: Path
    accuracy: float
    model_path: Path
    report_path: Path
    html_report_path: Path
    weights: str
    model_version: str
    promoted: bool
    promotion_reason: str
    current_version: str | None
    already_trained: bool = Field(
        False, description="The run ended early: this Drive upload had been trained on before (model_version)."
    )
