"""The one typed config of a retraining run.

`RetrainConfig` is the flow's only parameter, so the Prefect UI renders it as a form and a bad value fails
validation before any work starts. Each step receives only its part (`data`, `training`, `promotion`).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tuneflow.sources import ACCEPTED_SOURCES_TEXT, normalize_api_endpoint, parse_drive_source
from tuneflow.storage import DATA_ROOT_VARIABLE, default_data_root

# Keras refuses smaller inputs for ResNet50 without its top: five stride-2 stages need at least 32 px.
RESNET50_MIN_IMAGE_SIZE = 32
WEIGHTS_CHOICES_TEXT = (
    '"imagenet" (Keras downloads them), "none" (random initialisation), a local weights file path, '
    "or drive://FILE_ID (a weights file on Google Drive)"
)
# Prefect block names: lowercase letters, digits and dashes.
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


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


class TrainingSettings(BaseModel):
    """How ResNet50 is fine-tuned."""

    model_config = ConfigDict(extra="forbid")

    weights: str = Field(
        "imagenet",
        description=f"Initial ResNet50 weights: {WEIGHTS_CHOICES_TEXT}.",
    )
    image_size: int = Field(
        224,
        description="Side of the square images the network sees, in pixels (ResNet50 needs at least 32; "
        "ImageNet weights were trained at 224).",
        json_schema_extra={"minimum": RESNET50_MIN_IMAGE_SIZE, "maximum": 1024},
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Images per training step.")
    epochs: int = Field(
        5, ge=1, le=1000, description="Epochs training the new classification head on the frozen ResNet50 base."
    )
    fine_tune_epochs: int = Field(
        5,
        ge=0,
        le=1000,
        description="Further epochs with the whole base unfrozen at fine_tune_learning_rate (BatchNorm stays in "
        "inference mode). 0 skips this phase. Ignored with weights='none', where everything trains from the start.",
    )
    unfreeze: Literal["all", "none"] | int = Field(
        "all",
        description="What phase 2 unfreezes: 'all' of the base, the top N of ResNet50's 5 stages (1 = conv5 only), "
        "or 'none' (plain transfer learning: the base stays frozen, phase 2 is skipped).",
    )
    learning_rate: float = Field(1e-3, gt=0, le=1, description="Peak learning rate while the base is frozen.")
    fine_tune_learning_rate: float = Field(
        1e-5, gt=0, le=1, description="Peak learning rate once the base is unfrozen: low, to keep pretrained features."
    )
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Learning rate over each phase: cosine decay from the peak to 0, or constant."
    )
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam", description="Optimizer of both phases (sgd uses Nesterov momentum 0.9; adamw weight decay 1e-4)."
    )
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the classification layer.")
    horizontal_flip: bool = Field(
        True, description="Augment by flipping training images left-right (in the training model only, never saved)."
    )
    zoom: float = Field(
        0.2, ge=0, lt=1,
        description="Augment by zooming training images in or out by up to this share (reflected edges; in the "
        "training model only, from ops XLA compiles, never saved).",
    )
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description="Numeric precision: 'auto' is mixed_bfloat16 on GPUs of compute capability 8.0+ (A100, L4, "
        "H100), mixed_float16 on 7.x (V100, T4), float32 on CPUs and older GPUs. The precision used is recorded "
        "in trained.json and the report.",
    )
    jit_compile: Literal["auto"] | bool = Field(
        "auto",
        description="Compile the training step with XLA: 'auto' turns it on where a GPU trains and off on CPUs "
        "(3.3x slower there); true or false force it. Never applied across machines. Whether XLA was really "
        "applied is read back from the compiled model, logged (a warning when requested but not applied) and "
        "recorded in trained.json, metrics.json and the report.",
    )
    # A training that hangs but stays alive keeps its run's heartbeats going: these bound it (the run fails, and
    # can be resumed from its last epoch). tuneflow.training.time_limit derives the limit and logs it.
    timeout_factor: float = Field(
        3.0, ge=1, le=100,
        description="Training time limit once an epoch is measured: the time spent plus this many times what the "
        "remaining epochs take at the measured speed (a fine-tune epoch counted as several head epochs until one is "
        "measured), plus 10 minutes to save the model. Logged when derived; a training past it is stopped as hung.",
    )
    min_images_per_second: float = Field(
        1.0, gt=0,
        description="Until the first epoch ends, the slowest training speed still counted as progress: the first "
        "epoch must end within startup_minutes + train images / this.",
    )
    startup_minutes: float = Field(
        30.0, gt=0,
        description="Time allowed before the first epoch proper: starting TensorFlow, building the model, decoding "
        "the photos into the cache.",
    )
    timeout_minutes: float | None = Field(
        None, gt=0, description="A hard cap on the training's time limit, in minutes, whatever its measured speed "
        "(the run fails; resume it later). None: the derived limit only.",
    )

    @field_validator("image_size")
    @classmethod
    def _resnet50_can_take_it(cls, size: int) -> int:
        if size < RESNET50_MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size {size} is too small: ResNet50 needs at least {RESNET50_MIN_IMAGE_SIZE} px per side "
                "(224 is what the ImageNet weights were trained at)"
            )
        if size > 1024:
            raise ValueError(f"image_size {size} is larger than 1024 px; 224 is the usual choice for ResNet50")
        return size

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _auto_true_or_false(cls, value: object) -> object:
        text = str(value).strip().lower()
        if isinstance(value, bool) or text == "auto":
            return value if isinstance(value, bool) else "auto"
        if text in {"true", "false"}:
            return text == "true"
        raise ValueError(f"jit_compile {value!r}: give auto (XLA where a GPU trains), true or false")

    @field_validator("unfreeze")
    @classmethod
    def _stages_exist(cls, unfreeze: str | int) -> str | int:
        if isinstance(unfreeze, int) and not 1 <= unfreeze <= 5:
            raise ValueError(f"unfreeze={unfreeze}: ResNet50 has 5 stages; give 1-5, 'all' or 'none'")
        return unfreeze

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, weights: str) -> str:
        weights = weights.strip()
        if weights.lower() in {"imagenet", "none"}:
            return weights.lower()
        try:
            file_id = parse_drive_source(weights)
        except ValueError:
            raise ValueError(
                f"weights {weights!r} is not a Drive file link tuneflow understands; use {WEIGHTS_CHOICES_TEXT}"
            ) from None
        if file_id is not None:
            return f"drive://{file_id}"
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(f"weights {weights!r} is not a file; use {WEIGHTS_CHOICES_TEXT}")
        return str(path.resolve())


class DriveSettings(BaseModel):
    """How Google Drive sources and weights (drive://ID or share links) are fetched: auth, timeouts, retries."""

    model_config = ConfigDict(extra="forbid")

    key_file: Path | None = Field(
        None,
        description="Service-account JSON key file. Unset: the key_secret_block, else the file named by "
        "TUNEFLOW_DRIVE_KEY_FILE, else GOOGLE_APPLICATION_CREDENTIALS. Share the Drive file with the account's email.",
    )
    key_secret_block: str | None = Field(
        None,
        description="Name of a Prefect Secret block holding the service-account key's JSON (instead of a key file).",
    )
    api_endpoint: str | None = Field(
        None,
        description="Drive API base URL ending in /drive/v2/, only for a local Drive emulator (tests, benchmark); "
        "unset means Google's.",
    )
    http_timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="Seconds a Drive request may stay silent before it counts as failed and is retried "
        "(without a timeout a stalled connection would hang the run).",
    )
    chunk_mib: int = Field(
        64,
        ge=1,
        le=1024,
        description="Size of each ranged download request in MiB: how often progress is reported and the most a "
        "retry asks for again. Memory stays 4 MiB of buffers whatever it is.",
    )
    max_retries: int = Field(
        5,
        ge=0,
        le=20,
        description="Retries of a rate-limited (429/403 rate limit), failed (5xx) or dropped Drive request, with "
        "exponential backoff. Not found and permission errors are never retried.",
    )
    retry_base_delay_s: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Wait before the first retry; each further retry waits 1.618 times longer, at most 20 s.",
    )

    @field_validator("key_file")
    @classmethod
    def _key_file_exists(cls, key_file: Path | None) -> Path | None:
        if key_file is None:
            return None
        path = key_file.expanduser()
        if not path.is_file():
            raise ValueError(
                f"key_file {str(key_file)!r} is not a file; give the path of the service-account JSON key "
                "(or use key_secret_block, or set TUNEFLOW_DRIVE_KEY_FILE)"
            )
        return path.resolve()

    @field_validator("key_secret_block")
    @classmethod
    def _block_name(cls, name: str | None) -> str | None:
        if name is None or not name.strip():
            return None
        if not BLOCK_NAME.fullmatch(name.strip()):
            raise ValueError(
                f"key_secret_block {name!r} is not a Prefect block name (lowercase letters, digits and dashes, "
                "e.g. 'drive-service-account')"
            )
        return name.strip()

    @field_validator("api_endpoint")
    @classmethod
    def _drive_v2_endpoint(cls, endpoint: str | None) -> str | None:
        return normalize_api_endpoint(endpoint)

    @model_validator(mode="after")
    def _one_key_source(self) -> DriveSettings:
        if self.key_file is not None and self.key_secret_block is not None:
            raise ValueError("give either key_file or key_secret_block, not both")
        return self

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
        "caches, checkpoints, other machines' copies; the decoded photos only they used); older runs keep their model, reports, predictions, metrics "
        "and manifest. Cached preparations and Drive downloads no kept run uses go too. Applied at the end of "
        "each run; `tuneflow runs prune` applies it by hand.",
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
