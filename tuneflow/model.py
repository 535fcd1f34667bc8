"""The classifier: ResNet50 with its preprocessing inside and a small head.

Training, evaluation and `tuneflow predict` all read images through `tuneflow.image_decoding`, and the saved
model preprocesses its own input, so a prediction can never be preprocessed differently from training.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
SCRATCH_BATCHNORM_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="tuneflow")
class ResNet50Preprocess(keras.layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB 0-255 in, caffe-style BGR minus means out."""

    def call(self, inputs):
        return keras.applications.resnet50.preprocess_input(inputs)


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

    Returns (classifier, base) so the caller can freeze and unfreeze the base.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="rgb_pixels_0_255")
    # The notebook's augmentation (horizontal flip, 20 % zoom), as layers: active in fit(), idle in predict().
    x = inputs
    if horizontal_flip:
        x = keras.layers.RandomFlip("horizontal", seed=seed, name="augment_flip")(x)
    if zoom > 0:
        x = keras.layers.RandomZoom(zoom, seed=seed, name="augment_zoom")(x)
    x = ResNet50Preprocess(name="resnet50_preprocess")(x)
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


def save_classifier(model: keras.Model, classes: list[str], folder: Path) -> Path:
    """Write model.keras and classes.json; the model file appears only once complete."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLASSES_FILE).write_text(json.dumps(classes, indent=2) + "\n")
    partial = folder / f"partial-{MODEL_FILE}"  # Keras insists on the .keras suffix
    model.save(partial)
    partial.replace(folder / MODEL_FILE)
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
