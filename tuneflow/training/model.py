"""The classifier: ResNet50 with its preprocessing inside and a small head.

Training, evaluation and `tuneflow predict` all read images through `tuneflow.imaging.decoding`, and the saved
model preprocesses its own input, so a prediction can never be preprocessed differently from training.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from tuneflow.atomic_files import atomic_destination, write_json_atomically

from tuneflow.training.augmentation import FlipAndZoom

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
SCRATCH_BATCHNORM_MOMENTUM = 0.9


# caffe-style preprocessing, what ResNet50's ImageNet weights expect: BGR channel order, ImageNet means subtracted.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
# Training-time augmentation layers: the training model has them, the saved (inference) model does not. Keras'
# RandomFlip and RandomZoom are what versions saved before FlipAndZoom (which XLA can compile) hold.
AUGMENTATION_LAYERS = (FlipAndZoom, keras.layers.RandomFlip, keras.layers.RandomZoom)


@keras.saving.register_keras_serializable(package="tuneflow")
class ResNet50Preprocess(keras.layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB 0-255 in, caffe-style BGR minus means out.

    No longer built (a custom class made model.keras unloadable without tuneflow); kept registered so model versions
    saved before its built-in replacement (`resnet50_preprocessing`) still load through tuneflow.
    """

    def call(self, inputs):
        return keras.applications.resnet50.preprocess_input(inputs)


def resnet50_preprocessing(pixels: keras.KerasTensor) -> keras.KerasTensor:
    """keras.applications.resnet50.preprocess_input as one built-in layer, so model.keras loads with plain Keras.

    A frozen 1x1 convolution: its kernel is the RGB->BGR permutation (each output is one input times 1 plus two
    times 0: exact), its bias minus the ImageNet means (x + (-mean) is x - mean: exact), bit for bit what
    preprocess_input computes, in float32 and under mixed precision (tests/test_training.py). The means are weights
    rather than constants: a Normalization layer's constants became required inputs of the ONNX export.
    """
    permutation = np.zeros((1, 1, 3, 3), dtype="float32")
    for bgr, rgb in enumerate((2, 1, 0)):
        permutation[0, 0, rgb, bgr] = 1.0
    return keras.layers.Conv2D(
        3, 1, kernel_initializer=keras.initializers.Constant(permutation),
        bias_initializer=keras.initializers.Constant(-np.array(IMAGENET_MEAN_BGR, dtype="float32")),
        trainable=False, name="resnet50_preprocess",
    )(pixels)


def build_classifier(
    num_classes: int,
    image_size: int,
    weights_path: Path | None,
    dropout: float,
    seed: int,
    horizontal_flip: bool = True,
    zoom: float = 0.2,
) -> tuple[keras.Model, keras.Model]:
    """ResNet50 without its top, preprocessing and augmentation inside, GlobalAveragePooling + Dropout + softmax.

    Returns (classifier, base) so the caller can freeze and unfreeze the base. This is the training model;
    `inference_model` is what gets saved.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="rgb_pixels_0_255")
    # The notebook's augmentation (horizontal flip, 20 % zoom): active in fit(), idle in predict(), and compiled
    # by XLA with the rest of the training step (Keras' RandomZoom would turn XLA off for the whole model).
    x = inputs
    if horizontal_flip or zoom > 0:
        x = FlipAndZoom(horizontal_flip, zoom, seed=seed, name="augment")(x)
    x = resnet50_preprocessing(x)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    if weights_path is not None:
        try:
            base.load_weights(str(weights_path))
        except Exception as error:  # Keras raises ValueError, KeyError or OSError depending on the mismatch
            raise ValueError(
                f"weights file {str(weights_path)!r} does not fit ResNet50 without its top "
                f"({type(error).__name__}: {error}); give resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 "
                "or a file saved from this model's ResNet50 base"
            ) from error
    # With pretrained weights, BatchNorm stays in inference mode even once unfrozen: updating its statistics on
    # a few thousand images wrecks the pretrained features. From random weights it has to learn them.
    if weights_path is not None:
        x = base(x, training=False)
    else:
        # From scratch on a small dataset, the default momentum (0.99) leaves the moving statistics mostly at
        # their initial values after a few hundred steps, so validation sees a different network than training.
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = SCRATCH_BATCHNORM_MOMENTUM
        x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    # The softmax stays float32 under mixed precision, where float16 probabilities would round to 0 or 1.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name="tuneflow_resnet50"), base


def inference_model(model: keras.Model) -> keras.Model:
    """The classifier without its augmentation layers: the same layers and weights, what model.keras holds.

    Augmentation layers augment whenever they are called without training=False, and an export's serving
    function may call them without it: a SavedModel of the training model flipped and zoomed every photo it
    served, and ONNX has no such random ops at all. In predict() they are idle, so predictions are the same.
    Leaving the layer out also keeps model.keras loadable by plain Keras (FlipAndZoom is tuneflow's), and strips
    Keras' RandomFlip and RandomZoom from versions saved before FlipAndZoom replaced them.
    """

    def skip_augmentation(layer, *args, **kwargs):
        return args[0] if isinstance(layer, AUGMENTATION_LAYERS) else layer(*args, **kwargs)

    stripped = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=skip_augmentation)
    unknown = [layer.name for layer in stripped.layers if type(layer).__name__.startswith("Random")]
    if unknown:
        raise ValueError(f"layers {unknown} look like augmentation tuneflow does not know how to leave out; "
                         f"only {[cls.__name__ for cls in AUGMENTATION_LAYERS]} are")
    # A new functional model on the same graph: clone_model compiles its copy like the original, and a compiled
    # model.keras carries an optimizer (a fresh Adam is twice the weights: 284 MB instead of 95 MB for ResNet50).
    return keras.Model(stripped.inputs, stripped.outputs, name=model.name)


def save_classifier(model: keras.Model, classes: list[str], folder: Path) -> Path:
    """Write model.keras (the inference model: no augmentation, not compiled: training resumes from its
    checkpoints, never from model.keras) and classes.json; the model file appears only once complete."""
    folder.mkdir(parents=True, exist_ok=True)
    # Both replaced, never written into: a model version hard-links them (tuneflow.registry.versions).
    write_json_atomically(folder / CLASSES_FILE, classes)
    with atomic_destination(folder / MODEL_FILE) as partial:
        inference_model(model).save(partial)
    return folder / MODEL_FILE


def find_model_folder(folder: Path) -> Path:
    """The folder holding model.keras and classes.json: the given one or its model/ subfolder."""
    folder = Path(folder)
    for candidate in (folder, folder / "model"):
        if (candidate / MODEL_FILE).is_file() and (candidate / CLASSES_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"no {MODEL_FILE} with {CLASSES_FILE} in {str(folder)!r} or its model/ folder; "
        "give a run folder (data/runs/<run id>), a model version (data/models/<version>) or `current`"
    )


def load_classes(folder: Path) -> list[str]:
    return json.loads((find_model_folder(folder) / CLASSES_FILE).read_text())


def load_classifier(folder: Path) -> tuple[keras.Model, list[str]]:
    """Load model.keras and its class list from a run folder or a model folder."""
    model_folder = find_model_folder(folder)
    return keras.models.load_model(model_folder / MODEL_FILE), load_classes(model_folder)


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for a uint8 image batch."""
    return model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
