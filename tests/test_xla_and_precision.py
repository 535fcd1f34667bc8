"""The GPU path, right by construction: the precision and XLA choices given device details (no GPU here), XLA
read back from the compiled model, augmentation that XLA compiles, and gpu-check saying only what happened."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tuneflow.events import Compiled
from tuneflow.tasks.train import log_event
from tuneflow.training.augmentation import FlipAndZoom, flip_and_zoom
from tuneflow.training.devices import applied_jit_compile, choose_jit_compile, choose_precision, compute_capabilities
from tuneflow.training.gpu_check import PipelineReport, SpeedReport, describe, verdict

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("requested,capabilities,expected", [
    ("auto", [(8, 0)], "mixed_bfloat16"),  # A100
    ("auto", [(9, 0)], "mixed_bfloat16"),  # H100, H200
    ("auto", [(9, 0), (8, 6)], "mixed_bfloat16"),
    ("auto", [(8, 9)], "mixed_bfloat16"),  # L4
    ("auto", [(7, 5)], "mixed_float16"),  # T4
    ("auto", [(7, 0)], "mixed_float16"),  # V100
    ("auto", [(9, 0), (7, 5)], "mixed_float16"),  # the oldest GPU decides: every replica runs one policy
    ("auto", [(8, 0), (6, 0)], "float32"),
    ("auto", [(6, 1)], "float32"),  # Pascal: no tensor cores, float16 only costs accuracy
    ("auto", [], "float32"),  # the CPU
    ("auto", [(0, 0)], "float32"),  # TensorFlow reported no compute capability
    ("float32", [(9, 0)], "float32"),  # an explicit choice is kept, on any device
    ("mixed_float16", [], "mixed_float16"),
    ("mixed_bfloat16", [(7, 5)], "mixed_bfloat16"),
])
def test_auto_precision_is_bfloat16_from_ampere_float16_on_volta_and_turing(requested, capabilities, expected):
    assert choose_precision(requested, capabilities) == expected


def test_auto_xla_is_on_where_a_gpu_trains_off_on_cpus_and_never_across_machines():
    assert choose_jit_compile("auto", gpus=1, across_machines=False).wanted
    on_cpu = choose_jit_compile("auto", gpus=0, across_machines=False)
    assert not on_cpu.wanted and not on_cpu.warning and "off on CPUs" in on_cpu.reason
    assert choose_jit_compile(True, gpus=0, across_machines=False).wanted  # asked for: applied, slow or not
    assert not choose_jit_compile(False, gpus=2, across_machines=False).wanted
    across = choose_jit_compile(True, gpus=2, across_machines=True)
    assert not across.wanted and across.warning and "across machines" in across.reason
    assert not choose_jit_compile("auto", gpus=2, across_machines=True).warning  # nobody asked: no warning


def tiny_model(augmentation: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(augmentation(inputs)))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_xla_is_read_back_from_the_compiled_model_and_a_layer_that_blocks_it_is_named():
    """Keras' RandomZoom turned XLA off for the whole model while the run said "XLA on"; FlipAndZoom does not."""
    jit = choose_jit_compile(True, gpus=0, across_machines=False)
    blocked = tiny_model(keras.layers.RandomZoom(0.2, name="old_zoom"))
    blocked.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    applied, reason = applied_jit_compile(blocked, jit, across_machines=False)
    assert not applied and "old_zoom (RandomZoom) does not support it" in reason
    compiled = tiny_model(FlipAndZoom(seed=0))
    compiled.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    assert applied_jit_compile(compiled, jit, across_machines=False) == (True, "as requested")
    assert applied_jit_compile(compiled, jit, across_machines=True)[0] is False


def test_xla_wanted_and_not_applied_is_a_warning_in_the_run_log(caplog):
    refused = Compiled(phase="head", precision="float32", xla_applied=False, warning=True,
                       reason="Keras compiled without XLA: old_zoom (RandomZoom) does not support it")
    applied = Compiled(phase="fine-tune", precision="mixed_bfloat16", xla_applied=True, warning=False,
                       reason="on where a GPU trains")
    logger = logging.getLogger("tuneflow.test.fine-tune")
    with caplog.at_level(logging.INFO, logger.name):
        log_event(logger, refused)
        log_event(logger, applied)
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, "head phase compiled: XLA not applied (Keras compiled without XLA: old_zoom (RandomZoom) "
                          "does not support it); precision float32"),
        (logging.INFO, "fine-tune phase compiled: XLA applied (on where a GPU trains); precision mixed_bfloat16"),
    ]


def test_flip_and_zoom_zooms_like_keras_random_zoom_and_flips():
    """The same reflected bilinear zoom as RandomZoom's ImageProjectiveTransform, from gathers XLA compiles."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (6, 24, 20, 3)).astype("float32")
    zooms = np.array([[0.8], [0.9], [1.0], [1.05], [1.2], [1.13]], "float32")
    no_flips = np.zeros((6, 1), bool)
    ours = np.asarray(flip_and_zoom(images, zooms, no_flips))
    zeros = np.zeros_like(zooms)
    transforms = np.concatenate([zooms, zeros, 9.5 * (1 - zooms), zeros, zooms, 11.5 * (1 - zooms), zeros, zeros], 1)
    keras_zoom = tf.raw_ops.ImageProjectiveTransformV3(  # what keras.layers.RandomZoom(fill_mode="reflect") runs
        images=images, transforms=transforms, output_shape=[24, 20], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="REFLECT").numpy()
    np.testing.assert_allclose(ours, keras_zoom, atol=0.01)
    np.testing.assert_array_equal(ours[2], images[2])  # zoom 1: the image itself
    flipped = np.asarray(flip_and_zoom(images, np.ones_like(zooms), np.ones((6, 1), bool)))
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])


def test_flip_and_zoom_is_seeded_idle_at_prediction_and_float32_under_mixed_precision():
    images = np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    first, second = FlipAndZoom(seed=3), FlipAndZoom(seed=3)
    np.testing.assert_array_equal(np.asarray(first(images, training=True)), np.asarray(second(images, training=True)))
    assert not np.array_equal(np.asarray(first(images, training=True)), images)
    np.testing.assert_array_equal(np.asarray(first(images, training=False)), images)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        assert keras.backend.standardize_dtype(FlipAndZoom(seed=0)(images, training=True).dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """The packages outside the standard library a tuneflow module imports, itself or through tuneflow modules."""
    seen = set() if seen is None else seen
    seen.add(module)
    path = REPOSITORY.joinpath(*module.split(".")).with_suffix(".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    found = set()
    for name in names - {"__future__"}:
        if name.startswith("tuneflow."):
            if name not in seen:
                found |= third_party_imports(name, seen)
        elif name.split(".")[0] not in sys.stdlib_module_names:
            found.add(name.split(".")[0])
    return found


def test_the_model_code_imports_only_keras_and_numpy():
    """Backend-neutral: no TensorFlow, so bench/model_step.py times the classifier's train step under JAX or
    PyTorch too (measured there: docs/benchmarks.md)."""
    assert third_party_imports("tuneflow.training.model") == {"keras", "numpy"}


def speed_report(**changes) -> SpeedReport:
    values = dict(tensorflow="2.21.0", gpus=["NVIDIA H100 80GB HBM3 (compute capability (9, 0))"],
                  devices=["/device:GPU:0"], replicas=1, precision="mixed_bfloat16", precision_requested="auto",
                  xla_applied=True, xla_reason="on where a GPU trains", image_size=224, batch_size=256,
                  trainable="all", first_step_seconds=40.0, train_images_per_second=2400.0)
    return SpeedReport(**{**values, **changes})


def pipeline_report(later: float, first: float = 900.0) -> PipelineReport:
    return PipelineReport(photos=250, source="250 generated photos of the realistic mix", cores=16,
                          first_epoch_images_per_second=first, later_epoch_images_per_second=later)


def test_the_verdict_names_the_slower_side_with_both_rates_and_what_to_change():
    slow_feed = verdict(speed_report(), pipeline_report(later=1500))
    assert slow_feed.startswith("input-bound: the pipeline feeds 1500 images/s, training takes 2400")
    assert "more CPU cores" in slow_feed and "faster local disk" in slow_feed
    assert "decodes each photo once, at 900 images/s" in slow_feed  # the first epoch, slower again
    fast_feed = verdict(speed_report(xla_applied=False, xla_reason="as requested", precision="float32"),
                        pipeline_report(later=6000, first=3000))
    assert fast_feed.startswith("compute-bound: the pipeline feeds 6000 images/s, training takes 2400")
    assert "XLA, not applied here" in fast_feed and "mixed precision" in fast_feed and "larger batch" in fast_feed
    assert "XLA" not in verdict(speed_report(), pipeline_report(later=6000))  # applied already: not advised


def test_gpu_check_says_xla_off_with_the_reason_when_it_was_not_applied():
    text = describe(speed_report(xla_applied=False, xla_reason="Keras compiled without XLA: z (RandomZoom) does "
                                 "not support it"), pipeline_report(later=6000))
    assert "XLA: on" not in text and "XLA: off (Keras compiled without XLA: z (RandomZoom)" in text
    assert "precision: mixed_bfloat16 (requested auto)" in text and "\nverdict: compute-bound" in text


@pytest.mark.slow
def test_gpu_check_prints_xla_on_only_when_tensorflow_compiled_with_it(tiny_dataset):
    """Requested with the default augmentation: "XLA: on", and TensorFlow's own log proves XLA compiled the step
    (until now Keras' RandomZoom made it fall back while gpu-check printed "XLA: on")."""
    command = [sys.executable, "-m", "tuneflow.cli", "gpu-check", "--jit-compile", "true", "--trainable", "head",
               "--image-size", "32", "--batch-size", "4", "--steps", "1", "--photos", str(tiny_dataset.root)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "XLA: on (as requested)" in done.stdout, done.stdout
    assert "Compiled cluster using XLA" in done.stderr
    # What this machine has, asked of TensorFlow: the test holds on a CPU-only machine and on a GPU worker alike.
    gpus = tf.config.list_physical_devices("GPU")
    gpu_lines = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("GPU: ")]
    if gpus:
        assert len(gpu_lines) == len(gpus), done.stdout
        for line, gpu in zip(gpu_lines, gpus):
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            assert f"(compute capability {capability})" in line, done.stdout
    else:
        assert gpu_lines == ["GPU: none found (training runs on the CPU)"], done.stdout
    assert f"precision: {choose_precision('auto', compute_capabilities(gpus))} (requested auto)" in done.stdout
    assert f"{sum(sum(c.values()) for c in tiny_dataset.counts.values())} photos ({tiny_dataset.root})" in done.stdout
    assert float(done.stdout.split("trainable: ")[1].split(" images/s")[0]) > 0
    assert "\nverdict: " in done.stdout
