"""The transfer-learning recipe's phases: the head on the frozen base, then the top stages at a low learning
rate; from random weights one phase trains everything. Which layers train in each, and the optimizer."""

from __future__ import annotations

import keras
from pydantic import BaseModel

from tuneflow.config import TrainingSettings

# ResNet50's stages, bottom to top, by the prefix of their layer names.
RESNET50_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")


class Phase(BaseModel):
    name: str
    first_epoch: int  # 0-based, global across phases
    epochs: int
    learning_rate: float
    trainable_stages: tuple[str, ...]  # base stages trained in this phase

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs


def plan_phases(settings: TrainingSettings, pretrained: bool) -> list[Phase]:
    """The phases of a run, with global epoch numbers, so a resumed run knows where each one starts."""
    if not pretrained:
        return [Phase(name="full", first_epoch=0, epochs=settings.epochs, learning_rate=settings.learning_rate,
                      trainable_stages=RESNET50_STAGES)]
    phases = [Phase(name="head", first_epoch=0, epochs=settings.epochs, learning_rate=settings.learning_rate,
                    trainable_stages=())]
    if settings.unfreeze != "none" and settings.fine_tune_epochs > 0:
        top = RESNET50_STAGES if settings.unfreeze == "all" else RESNET50_STAGES[-int(settings.unfreeze):]
        phases.append(Phase(name="fine-tune", first_epoch=settings.epochs, epochs=settings.fine_tune_epochs,
                            learning_rate=settings.fine_tune_learning_rate, trainable_stages=top))
    return phases


def set_trainable_stages(base: keras.Model, stages: tuple[str, ...], freeze_batchnorm: bool) -> None:
    """Train only the layers of the given ResNet50 stages.

    With pretrained weights, BatchNorm layers stay frozen, which in Keras also means inference mode: updating
    their statistics on a few thousand images wrecks the pretrained features. (Calling the base with
    training=False is not enough under Keras 3: measured, the moving statistics still moved.)
    """
    base.trainable = bool(stages)
    for layer in base.layers:
        in_stage = bool(stages) and layer.name.split("_")[0] in stages
        is_batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = in_stage and not (is_batchnorm and freeze_batchnorm)


def make_optimizer(settings: TrainingSettings, learning_rate: float, decay_steps: int) -> keras.optimizers.Optimizer:
    schedule = (
        keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, decay_steps))
        if settings.lr_schedule == "cosine"
        else learning_rate
    )
    if settings.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    if settings.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=1e-4)
    return keras.optimizers.Adam(schedule)
