"""`tuneflow gpu-check`: what limits a worker, measured before it takes real jobs.

Three measurements on the worker itself: the training step (the real classifier on synthetic pixels, with the
XLA and precision training would apply, both read back from the compiled model rather than assumed); the input
pipeline on this machine's cores (tuneflow.imaging.pipeline on photos in the sizes and encodings of a real set,
or on a prepared dataset), its first epoch (decoding into the store) and a later one; and the verdict: which of the
two is slower, and what to change.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

from tuneflow.config import TrainingSettings

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
LATER_EPOCHS = 3


class SpeedReport(BaseModel):
    tensorflow: str
    gpus: list[str]
    devices: list[str]
    replicas: int
    precision: str  # the policy training ran under (what precision=auto chose)
    precision_requested: str
    xla_applied: bool  # read back from the compiled model
    xla_reason: str
    image_size: int
    batch_size: int
    trainable: str  # "all" (the fine-tune phase) or "head"
    first_step_seconds: float
    train_images_per_second: float


class PipelineReport(BaseModel):
    photos: int
    source: str
    cores: int
    first_epoch_images_per_second: float  # decoding into the store as it reads, building the pipeline included
    later_epoch_images_per_second: float  # reading decoded photos (page cache warm), batched


def measure_training_speed(
    settings: TrainingSettings, steps: int = 20, cpu_replicas: int = 1, trainable: str = "all"
) -> SpeedReport:
    """Train the real classifier on synthetic pixels, every layer trainable (the fine-tune phase, the slower one)
    or only the head, and time it; XLA and precision as training chooses them, read back once compiled."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tuneflow.training.devices import applied_jit_compile, choose_jit_compile, configure_devices
    from tuneflow.training.model import build_classifier

    strategy, setup = configure_devices(settings, cpu_replicas)
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(f"{details.get('device_name', gpu.name)} (compute capability {details.get('compute_capability')})")
    size, batch = settings.image_size, settings.batch_size
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, size, size, 3)).astype("uint8")  # what the input pipeline hands over
    labels = keras.utils.to_categorical(rng.integers(0, 5, batch), 5)
    data = tf.data.Dataset.from_tensors((pixels, labels)).repeat().prefetch(2)
    jit = choose_jit_compile(settings.jit_compile, setup.gpus, across_machines=False)
    with strategy.scope():
        model, base = build_classifier(5, size, None, 0.2, 0, settings.horizontal_flip, settings.zoom)
        base.trainable = trainable == "all"
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=jit.wanted)
        model.optimizer.build(model.trainable_variables)  # as training does: eagerly, not inside the traced step
    xla_applied, xla_reason = applied_jit_compile(model, jit, across_machines=False)
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # tracing and compilation
    first_step = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    return SpeedReport(
        tensorflow=tf.__version__, gpus=gpus, devices=setup.devices, replicas=setup.replicas,
        precision=setup.precision, precision_requested=settings.precision, xla_applied=xla_applied,
        xla_reason=xla_reason, image_size=size, batch_size=batch, trainable=trainable,
        first_step_seconds=round(first_step, 2), train_images_per_second=round(steps * batch / seconds, 1),
    )


def find_photos(folder: Path) -> list[str]:
    """Every photo under `folder` (a prepared dataset, class folders, or photos side by side), sorted."""
    photos = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise ValueError(f"no .jpg, .jpeg or .png photo under {str(folder)!r}; give a prepared dataset's folder "
                         "(data_root/runs/<run id>/dataset) or a folder of photos")
    return photos


def measure_input_pipeline(
    settings: TrainingSettings, photos_folder: Path | None = None, generated_photos: int = 250
) -> PipelineReport:
    """Time the training input pipeline on this machine: the first epoch (decoding every photo into a fresh
    store, then reading it) and later epochs (reading the decoded photos back), in images/s.

    Without `photos_folder`, generates `generated_photos` photos of the realistic mix (tuneflow.dataset.photo_mix:
    Food-101's sizes, phone photos, PNGs) in a temporary folder.
    """
    from tuneflow.dataset.photo_mix import REAL_PHOTO_MIX, write_photo_mix
    from tuneflow.dataset.sample import SAMPLE_CLASSES
    from tuneflow.imaging.pipeline import make_input_pipeline

    scratch = Path(tempfile.mkdtemp(prefix="tuneflow-gpu-check-"))
    try:
        if photos_folder is None:
            per_class = max(1, generated_photos // len(SAMPLE_CLASSES))
            write_photo_mix(scratch / "photos", SAMPLE_CLASSES, per_class, REAL_PHOTO_MIX)
            source = f"{per_class * len(SAMPLE_CLASSES)} generated photos of the realistic mix"
            photos_folder = scratch / "photos"
        else:
            source = str(photos_folder)
        paths = find_photos(photos_folder)
        labels = [0] * len(paths)  # what the pipeline costs does not depend on the labels

        started = time.perf_counter()
        dataset = make_input_pipeline(paths, labels, 1, settings.image_size, settings.batch_size, seed=0,
                                      cache_dir=scratch / "decoded", shuffle=True)
        drain(dataset)
        first = time.perf_counter() - started
        # Later epochs read the store the first one filled. Timed through a pipeline built on the full store: the
        # same reading per photo, without the ~20 ms the first run's pipeline spends starting each epoch (nothing on
        # a real dataset's epoch, most of one over these few photos).
        dataset = make_input_pipeline(paths, labels, 1, settings.image_size, settings.batch_size, seed=0,
                                      cache_dir=scratch / "decoded", shuffle=True)
        later = statistics.median(timed(lambda: drain(dataset)) for _ in range(LATER_EPOCHS))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return PipelineReport(
        photos=len(paths), source=source, cores=len(os.sched_getaffinity(0)),
        first_epoch_images_per_second=round(len(paths) / first, 1),
        later_epoch_images_per_second=round(len(paths) / later, 1),
    )


def drain(dataset) -> None:
    for images, _ in dataset:
        images.numpy()


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def verdict(speed: SpeedReport, pipeline: PipelineReport) -> str:
    """Input-bound or compute-bound, with the numbers and what to change."""
    feeds, takes = pipeline.later_epoch_images_per_second, speed.train_images_per_second
    lines = []
    if feeds < takes:
        lines.append(f"input-bound: the pipeline feeds {feeds:g} images/s, training takes {takes:g}. To change: "
                     f"more CPU cores for this worker (the pipeline reads and batches on its {pipeline.cores}), "
                     "the decoded store (data_root/cache/decoded) on a faster local disk (NVMe) with room in "
                     "memory for the page cache to hold it")
    else:
        changes = []
        if speed.gpus and not speed.xla_applied:
            changes.append(f"XLA, not applied here ({speed.xla_reason})")
        if speed.gpus and speed.precision == "float32":
            changes.append("mixed precision (precision=auto picks it on GPUs of compute capability 7.0+)")
        changes.append("a larger batch size while it fits in memory (then scale the learning rate with it)")
        changes.append("more GPUs (MirroredStrategy)" if speed.gpus else "a GPU worker")
        lines.append(f"compute-bound: the pipeline feeds {feeds:g} images/s, training takes {takes:g}. To change: "
                     + "; ".join(changes))
    if pipeline.first_epoch_images_per_second < takes:
        lines.append(f"the first epoch decodes each photo once, at {pipeline.first_epoch_images_per_second:g} "
                     "images/s: with storage.keep_decoded_photos on (the default) a retrain decodes only photos "
                     "new since the last run")
    return "\n  ".join(lines)


def describe(speed: SpeedReport, pipeline: PipelineReport | None = None) -> str:
    gpu_line = "\n".join(f"  GPU: {gpu}" for gpu in speed.gpus) or "  GPU: none found (training runs on the CPU)"
    # "XLA: on" only when the compiled model says so: a request Keras turned down prints the reason instead.
    xla = "on" if speed.xla_applied else "off"
    text = (
        f"TensorFlow {speed.tensorflow}\n{gpu_line}\n"
        f"  training devices: {', '.join(speed.devices)} ({speed.replicas} replica(s))\n"
        f"  precision: {speed.precision} (requested {speed.precision_requested}); XLA: {xla} ({speed.xla_reason})\n"
        f"  training step, ResNet50 at {speed.image_size} px, batch {speed.batch_size}, "
        f"{'every layer' if speed.trainable == 'all' else 'the head only'} trainable: "
        f"{speed.train_images_per_second:g} images/s (first step, with compilation: {speed.first_step_seconds} s)"
    )
    if pipeline is None:
        return text
    return (
        f"{text}\n"
        f"  input pipeline on {pipeline.cores} cores, {pipeline.photos} photos ({pipeline.source}): first epoch "
        f"{pipeline.first_epoch_images_per_second:g} images/s (decoding), later epochs "
        f"{pipeline.later_epoch_images_per_second:g} images/s\n"
        f"verdict: {verdict(speed, pipeline)}"
    )
