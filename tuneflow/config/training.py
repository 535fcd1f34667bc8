"""How ResNet50 is fine-tuned: the `training` section of the config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneflow.sources import parse_drive_source

# Keras refuses smaller inputs for ResNet50 without its top: five stride-2 stages need at least 32 px.
RESNET50_MIN_IMAGE_SIZE = 32
WEIGHTS_CHOICES_TEXT = (
    '"imagenet" (Keras downloads them), "none" (random initialisation), a local weights file path, '
    "or drive://FILE_ID (a weights file on Google Drive)"
)


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
