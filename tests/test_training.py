"""Fine-tuning by the book: preprocessing and decoding, the two phases, saving. (The GPU check:
tests/test_xla_and_precision.py.)"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.records import TINY_TRAINING_KNOBS as TINY
from tuneflow.config import TrainingSettings
from tuneflow.training.model import ResNet50Preprocess, build_classifier, load_classifier, resnet50_preprocessing
from tuneflow.training.checkpoints import TENSORBOARD_DIR



@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_preprocessing_inside_the_model_is_resnet50_preprocess_input_bit_for_bit(policy):
    """Built-in layers (model.keras loads without tuneflow) computing exactly what the custom layer they replace did."""
    rng = np.random.default_rng(0)
    pixels = np.concatenate([rng.integers(0, 256, (4, 8, 8, 3)), rng.uniform(0, 255, (4, 8, 8, 3))]).astype("float32")
    keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = keras.Input((8, 8, 3))
        built_in = keras.Model(inputs, resnet50_preprocessing(inputs))
        custom = keras.Model(inputs, ResNet50Preprocess()(inputs))  # what versions saved until now hold
        assert not [type(layer) for layer in built_in.layers if type(layer).__module__.startswith("tuneflow")]
        np.testing.assert_array_equal(built_in.predict(pixels, verbose=0), custom.predict(pixels, verbose=0))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_array_equal(np.asarray(ResNet50Preprocess()(pixels)), expected)
    # caffe style: BGR order, ImageNet means subtracted, no scaling
    np.testing.assert_allclose(expected[..., 0], pixels[..., 2] - 103.939, rtol=1e-5)


@pytest.mark.parametrize("width,height,fmt", [(512, 512, "JPEG"), (512, 384, "JPEG"), (384, 512, "JPEG"),
                                              (512, 341, "JPEG"), (2400, 800, "JPEG"), (4032, 3024, "JPEG"),
                                              (60, 40, "JPEG"), (300, 200, "JPEG"), (512, 512, "PNG")])
def test_fast_decode_matches_a_full_decode_and_antialiased_resize(width, height, fmt):
    """Every decode plan (a JPEG decoded at 1/2..1/8 size, then bilinear, area or antialiased bilinear) sees the
    picture a full decode would.

    Reference: the same file decoded whole and resized with antialiasing. Plain bilinear from the full 2400-px
    photo is ~19 gray levels off on this content, 36 from a phone photo (aliasing); different but proper
    low-pass filters stay within ~3 (measured: 2.6 at most, the 1/2 decodes of 512-px photos).
    """
    import io

    import tensorflow as tf
    from PIL import Image

    from tuneflow.imaging.decoding import decode_image

    coarse = np.random.default_rng(width + height).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), "uint8")
    photo = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)  # smooth, with some detail
    encoded = io.BytesIO()
    photo.save(encoded, fmt, quality=95)
    fast = decode_image(tf.constant(encoded.getvalue()), 224).numpy()
    decoded_whole = tf.io.decode_image(encoded.getvalue(), channels=3).numpy()
    reference = tf.image.resize(decoded_whole, (224, 224), antialias=True).numpy()
    assert fast.shape == (224, 224, 3) and fast.dtype == np.uint8
    assert np.abs(fast.astype(float) - reference).mean() < 3.5  # gray levels out of 255


def test_unknown_weights_file_layout_is_explained(tmp_path):
    not_resnet = tmp_path / "other.weights.h5"
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    small.save_weights(not_resnet)
    with pytest.raises(ValueError, match="does not fit ResNet50 without its top"):
        build_classifier(3, 32, not_resnet, 0.2, 0)


@pytest.fixture(scope="module")
def two_phase_run(tiny_dataset, resnet50_weights_file, tmp_path_factory):
    """One head epoch and one fine-tune epoch from a pretrained weights file, in this process."""
    from tuneflow.training.fine_tune import train_classifier

    run_dir = tmp_path_factory.mktemp("two-phase")
    settings = TrainingSettings(weights=str(resnet50_weights_file), epochs=1, fine_tune_epochs=1, **TINY)
    result = train_classifier(tiny_dataset, settings, resnet50_weights_file, seed=0, run_dir=run_dir)
    return run_dir, result


def base_of(weights: Path, image_size: int = 32) -> keras.Model:
    """The ResNet50 base of a classifier checkpoint."""
    model, base = build_classifier(3, image_size, None, 0.2, 0)
    model.load_weights(weights)
    return base


def initial_base(weights_file: Path) -> keras.Model:
    """The ResNet50 base as the weights file gave it, before any training."""
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.load_weights(weights_file)
    return base


@pytest.mark.slow
def test_phase_one_leaves_the_base_unchanged(two_phase_run, resnet50_weights_file):
    run_dir, _ = two_phase_run
    initial = initial_base(resnet50_weights_file)
    after_head = base_of(run_dir / "checkpoints" / "after-head.weights.h5")
    for before, after in zip(initial.weights, after_head.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after), err_msg=before.path)


@pytest.mark.slow
def test_phase_two_trains_the_base_but_not_batchnorm_statistics(two_phase_run, resnet50_weights_file):
    run_dir, _ = two_phase_run
    initial = initial_base(resnet50_weights_file)
    final = base_of(run_dir / "checkpoints" / "after-fine-tune.weights.h5")
    moving = [(b, a) for b, a in zip(initial.weights, final.weights) if "moving_" in b.path]
    assert len(moving) == 2 * 53  # ResNet50 has 53 BatchNormalization layers
    for before, after in moving:
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after), err_msg=before.path)
    kernels = [(b, a) for b, a in zip(initial.weights, final.weights) if b.path.endswith("kernel")]
    changed = sum(not np.array_equal(np.asarray(b), np.asarray(a)) for b, a in kernels)
    assert changed == len(kernels), f"only {changed} of {len(kernels)} conv kernels were fine-tuned"


@pytest.mark.slow
def test_saved_model_predicts_like_the_trained_one_on_raw_pixels(two_phase_run):
    run_dir, result = two_phase_run
    trained, _ = build_classifier(3, 32, None, 0.2, 0)
    trained.load_weights(run_dir / "checkpoints" / "after-fine-tune.weights.h5")
    reloaded, classes = load_classifier(run_dir)
    pixels = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(pixels, verbose=0), trained.predict(pixels, verbose=0), atol=1e-6)
    assert classes == result.classes == ["apple_pie", "pizza", "sashimi"]
    history = pd.read_csv(result.history_path)
    assert history["phase"].tolist() == ["head", "fine-tune"] and history["epoch"].tolist() == [1, 2]


def epoch_scalars(log_dir: Path, tag: str) -> dict[int, float]:
    """epoch -> value of one scalar in a TensorBoard log folder, read as TensorBoard itself reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {event.step: float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)}


@pytest.mark.slow
def test_tensorboard_shows_both_phases_as_one_run(two_phase_run):
    run_dir, result = two_phase_run
    history = pd.read_csv(result.history_path)
    logs = run_dir / TENSORBOARD_DIR
    for side, prefix in (("train", ""), ("validation", "val_")):
        for metric in ("loss", "accuracy"):
            values = epoch_scalars(logs / side, f"epoch_{metric}")
            assert list(values) == [0, 1], f"{side} {metric}: epochs {list(values)} (head, then fine-tune)"
            np.testing.assert_allclose(list(values.values()), history[f"{prefix}{metric}"], rtol=1e-5)


def test_tensorboard_logs_are_written_by_the_training_loop_used_across_machines(tmp_path):
    """fit_across_machines hands its callbacks the calls fit makes, so TensorBoard logs look the same (here on
    one machine's default strategy and a tiny model: the loop, not ResNet50, is what is checked)."""
    from tuneflow.training.across_machines import fit_across_machines
    from tuneflow.training.checkpoints import tensorboard_logs

    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(8, 4)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    settings = TrainingSettings(weights="none", batch_size=4, image_size=32, epochs=2)
    fit_across_machines(model, tf.distribute.get_strategy(), data, data, settings, steps_per_epoch=2,
                        initial_epoch=0, epochs=2, callback=keras.callbacks.CallbackList([tensorboard_logs(tmp_path)]))
    assert list(epoch_scalars(tmp_path / TENSORBOARD_DIR / "train", "epoch_loss")) == [0, 1]
    assert list(epoch_scalars(tmp_path / TENSORBOARD_DIR / "validation", "epoch_accuracy")) == [0, 1]
