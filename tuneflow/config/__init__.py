"""The one typed config of a retraining run.

`RetrainConfig` is the flow's only parameter, so the Prefect UI renders it as a form and a bad value fails
validation before any work starts. Each step receives only its part (`data`, `training`, `promotion`).

The sections with many fields have a module each (data, training, drive); the small ones and RetrainConfig live
here. Every section is imported from `tuneflow.config`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneflow.config.data import DataSettings
from tuneflow.config.drive import DriveSettings
from tuneflow.config.training import TrainingSettings
from tuneflow.sources import ACCEPTED_SOURCES_TEXT, parse_drive_source
from tuneflow.storage import DATA_ROOT_VARIABLE, default_data_root

__all__ = [
    "DataSettings", "DriveSettings", "PromotionSettings", "RetrainConfig", "ServingSettings", "StorageSettings",
    "TrainingSettings",
]


class PromotionSettings(BaseModel):
    """When a newly trained model replaces the one in use (data_root/models/current)."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(
        0.0,
        ge=-0.5,
        le=0.5,
        description="How much higher the new model's validation accuracy must be than the current model's on the "
        "same images to replace it, e.g. 0.01 = one percentage point. 0: at least as good. Negative: tolerate a "
        "small drop.",
    )
    force: bool = Field(
        False,
        description="Put the new model into use whatever the comparison says (e.g. after changing the classes, "
        "when the current model cannot be compared).",
    )
    require_significance: bool = Field(
        False,
        description="Also demand that the new model gets more of the compared photos right than the model in use "
        "with McNemar's exact p-value below significance_level (besides the margin). Off: the margin alone decides.",
    )
    significance_level: float = Field(
        0.05, gt=0.0, lt=1.0, description="The p-value require_significance demands, e.g. 0.05."
    )


class StorageSettings(BaseModel):
    """What a run keeps on disk, so that weekly retraining on a growing dataset does not fill it."""

    model_config = ConfigDict(extra="forbid")

    reuse_prepared: bool = Field(
        True,
        description="Prepare each (archive MD5, data settings, seed) once into data_root/cache/prepared/ and give "
        "every run hard links to it: a run on unchanged data extracts no photo and takes no extra disk space. Off: "
        "each run extracts its own copy.",
    )
    keep_decoded_photos: bool = Field(
        True,
        description="Keep the photos training decodes (224 px: 150 kB each, 15 GB for all of Food-101) in "
        "data_root/cache/decoded/, named by the SHA-256 of their bytes, so the next retrain decodes only the photos "
        "that are new since then. Photos no run that keeps its heavy files has used are pruned with those runs. "
        "Off: each run decodes every photo into its own folder and deletes it when training ends.",
    )
    keep_runs: int = Field(
        3,
        ge=0,
        description="How many of the newest finished runs keep their heavy files (the dataset folder, decoded "
        "caches, other machines' copies; the decoded photos only they used); older runs keep their model, reports, "
        "predictions, metrics and manifest. Cached preparations and Drive downloads no kept run uses go too. "
        "Checkpoints, only for resuming, go as soon as a run finishes; a failed run keeps them. Applied at the end "
        "of each run; `tuneflow runs prune` applies it by hand.",
    )
    report_base_url: str | None = Field(
        None,
        description="The URL at which data_root/runs/ is served over HTTP (a web server or bucket publishing that "
        "folder), e.g. https://files.internal/tuneflow/runs: the dashboard then links each run's report.html as "
        "<url>/<run id>/report.html. Empty: the dashboard says on which worker and at which path report.html is, "
        "and how to copy it, rather than a file:// link that opens nowhere else.",
        pattern=r"^https?://\S+$",
    )


class ServingSettings(BaseModel):
    """Where the model in use is exported for TF Serving: data_root/serving/<serving_name>/<N>/, one N per promotion."""

    model_config = ConfigDict(extra="forbid")

    export_on_promotion: bool = Field(
        True,
        description="On every promotion, export the model put into use as a SavedModel into "
        "data_root/serving/<serving_name>/<N>/ (N one more than the last), which a TF Serving container watching "
        "that folder picks up by itself. Off: no serving export (`tuneflow export` still exports any version).",
    )
    serving_name: str = Field(
        "tuneflow",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The model's name for TF Serving (its MODEL_NAME and /v1/models/<name> URL) and its folder "
        "under data_root/serving/.",
    )
    keep_serving_versions: int = Field(
        3,
        ge=1,
        le=1000,
        description="How many of the newest serving versions are kept: TF Serving serves the highest, the older "
        "ones are there to roll back to by hand. Each is the size of model.keras (about 95 MB for ResNet50).",
    )


class RetrainConfig(BaseModel):
    """Everything one retraining run needs: where the photos are, how to split them, how to train."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        ...,
        description="The dataset archive: a local dataset.zip path, drive://FILE_ID, or a Google Drive share link "
        "(https://drive.google.com/file/d/FILE_ID/view?usp=sharing).",
    )
    data: DataSettings = Field(default_factory=DataSettings, description="How the archive becomes train/val.")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="How ResNet50 is fine-tuned.")
    promotion: PromotionSettings = Field(
        default_factory=PromotionSettings, description="When the new model replaces the one in use."
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="What runs keep on disk: reused preparations, retention."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="Where the model in use is exported for TF Serving."
    )
    dataset_name: str | None = Field(
        None,
        max_length=100,
        description="Names this dataset's dashboard artifacts (tuneflow-<name>-report, ...; lowercased, other "
        "characters become dashes), so two deployments never share an artifact's history. Unset: the deployment's "
        "name ('local' for a run not started from a deployment).",
    )
    seed: int = Field(42, ge=0, description="Seed for the split, weight initialisation and shuffling.")
    drive: DriveSettings = Field(
        default_factory=DriveSettings, description="How Google Drive sources and weights are fetched."
    )
    data_root: Path = Field(
        default_factory=default_data_root,
        description="Folder under which each run writes runs/<run id>/, model versions are kept (models/<version>/, "
        "models/current) and Drive downloads are cached (cache/drive/<file id>/<md5>/); nothing is written elsewhere. "
        f"It must outlive the worker: on a container, a mounted volume. Default: ${DATA_ROOT_VARIABLE} when set "
        "(read where the run executes), else `data` in the working folder.",
    )
    allow_ephemeral_data_root: bool = Field(
        False,
        description="Run even though data_root is inside a container's own filesystem, which is discarded with the "
        "container, taking every model version with it. Off: such a run fails before any work starts.",
    )
    resume_run_id: str | None = Field(
        None,
        description="Continue an interrupted run (its folder data_root/runs/<id>) from its last finished epoch "
        "instead of starting a new one.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )

    @field_validator("source")
    @classmethod
    def _source_given(cls, source: str) -> str:
        if not source.strip():
            raise ValueError(f"source is empty; give {ACCEPTED_SOURCES_TEXT}")
        file_id = parse_drive_source(source)  # a ValueError here lists the accepted forms
        # One spelling per Drive file, whichever link was pasted: config.json and metrics.json stay comparable.
        return f"drive://{file_id}" if file_id else source.strip()
