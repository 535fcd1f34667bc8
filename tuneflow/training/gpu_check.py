"""`tuneflow gpu-check`: what a new worker will train on, and how fast, before it takes real jobs."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tuneflow.config import TrainingSettings


class SpeedReport(BaseModel):
    tensorflow: str
    gpus: list[str]
    devices: list[str]
    replicas: int
    precision: str
    jit_compile: bool
    image_size: int
    batch_size: int
    first_step_seconds: float
    train_images_per_second: float


def measure_training_speed(settings: TrainingSettings, steps: int = 20, cpu_replicas: int = 1) -> SpeedReport:
    """Train the real classifier (both phases' worth of weights trainable) on synthetic pixels and time it."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tuneflow.training.model import build_classifier
    from tuneflow.training.devices import configure_devices

    strategy, setup = configure_devices(settings, cpu_replicas)
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(f"{details.get('device_name', gpu.name)} (compute capability {details.get('compute_capability')})")
    size, batch = settings.image_size, settings.batch_size
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    labels = keras.utils.to_categorical(rng.integers(0, 5, batch), 5)
    data = tf.data.Dataset.from_tensors((pixels, labels)).repeat().prefetch(2)
    with strategy.scope():
        model, _ = build_classifier(5, size, None, 0.2, 0)
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=settings.jit_compile)
        model.optimizer.build(model.trainable_variables)  # as training does: eagerly, not inside the traced step
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # tracing and compilation
    first_step = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    return SpeedReport(
        tensorflow=tf.__version__,
        gpus=gpus,
        devices=setup.devices,
        replicas=setup.replicas,
        precision=setup.precision,
        jit_compile=settings.jit_compile,
        image_size=size,
        batch_size=batch,
        first_step_seconds=round(first_step, 2),
        train_images_per_second=round(steps * batch / seconds, 1),
    )


def describe(report: SpeedReport) -> str:
    gpu_line = "\n".join(f"  GPU: {gpu}" for gpu in report.gpus) or "  GPU: none found (training runs on the CPU)"
    return (
        f"TensorFlow {report.tensorflow}\n{gpu_line}\n"
        f"  training devices: {', '.join(report.devices)} ({report.replicas} replica(s))\n"
        f"  precision: {report.precision}; XLA: {'on' if report.jit_compile else 'off'}\n"
        f"  ResNet50 training at {report.image_size} px, batch {report.batch_size}: "
        f"{report.train_images_per_second} images/s (first step, with compilation: {report.first_step_seconds} s)"
    )
