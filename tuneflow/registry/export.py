"""A model version exported for the runtimes that serve it: SavedModel (TF Serving), ONNX (onnxruntime), LiteRT.

Every export is of the inference model (tuneflow.training.model.inference_model: the trained weights, no augmentation),
computing in float32 (also for a model trained under mixed precision), and takes the same input, a batch of RGB
uint8 pixels of the model's image size (`pixels`, [batch, size, size, 3]), and gives the class probabilities
(`probabilities`, [batch, classes], float32) in the order of classes.json, which every export writes beside its
model file. The SavedModel has two signatures, both also returning the class names (`classes`, [batch, classes],
string):

    serving_default   pixels        uint8 [batch, size, size, 3], RGB, already `size` x `size`
    serving_bytes     image_bytes   string [batch], encoded JPEG/PNG/GIF/BMP, decoded and resized by
                                    tuneflow.imaging.decoding.decode_image, exactly as training decodes its photos

What serving_bytes cannot do is what preparation does before decode_image: it ignores EXIF orientation (a phone
photo taken in portrait is classified on its side) and reads neither WebP, HEIC, CMYK nor 16-bit files. Clients
send upright 8-bit RGB JPEGs or PNGs (README: Serving the model in use).

An export folder appears complete or not at all: it is written under a hidden name beside its final one, on the
same filesystem, and renamed into place.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import keras
import tensorflow as tf

from tuneflow.atomic_files import staged_folder
from tuneflow.imaging.decoding import decode_image
from tuneflow.training.model import CLASSES_FILE, inference_model, load_classifier

FORMATS = ("savedmodel", "onnx", "litert")
# What each format's export folder holds besides classes.json.
MODEL_FILES = {"savedmodel": "savedmodel", "onnx": "model.onnx", "litert": "model.tflite"}
EXPORT_EXTRA_INSTALL = "pip install 'tuneflow[export]'"
PIXELS_INPUT = "pixels"
BYTES_INPUT = "image_bytes"
PROBABILITIES_OUTPUT = "probabilities"
CLASSES_OUTPUT = "classes"
BYTES_SIGNATURE = "serving_bytes"


class ExportUnavailableError(RuntimeError):
    """A format's converter is not installed."""


def require(module: str, fmt: str):
    """Import a converter, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ExportUnavailableError(
            f"exporting to {fmt} needs the {module!r} package, which is not installed ({error}); "
            f"install tuneflow's export extra: {EXPORT_EXTRA_INSTALL}"
        ) from None


def computing_in_float32(model: keras.Model) -> keras.Model:
    """The model itself, or for one trained under mixed precision a float32 copy with the same weights.

    float16 compute is for GPUs: CPUs (TF Serving's usual host), onnxruntime and LiteRT run float32, and Keras' own
    ONNX export requires the float32 policy. The copy is the more exact of the two: on an untrained 32-px model
    its probabilities and the float16 ones differed by 2e-4.
    """
    def layers_within(layer: keras.Layer):
        yield layer
        for inner in getattr(layer, "layers", ()):  # ResNet50 is a model inside the model
            yield from layers_within(inner)

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in layers_within(model)):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def pixels_to_probabilities(model: keras.Model) -> tf.types.experimental.PolymorphicFunction:
    """The inference model, computing in float32, as a tf.function on uint8 pixels: what every export runs."""
    model = computing_in_float32(inference_model(model))
    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=PIXELS_INPUT)])
    def probabilities(pixels):
        return {PROBABILITIES_OUTPUT: model(tf.cast(pixels, tf.float32), training=False)}

    return probabilities


def holding_variables_of(function: tf.types.experimental.ConcreteFunction) -> tf.Module:
    """A tf.Module tracking the tf.Variables a traced function reads, each once.

    Keras' own ExportArchive (and so model.export) tracks the keras.Variable wrappers besides and stores every
    weight twice: 2x the disk and 2x TF Serving's memory (keras-team/keras#23553, open in Keras 3.15). Handing the
    LiteRT converter the Keras model instead lost the weights altogether (a 264 KB file).
    """
    module = tf.Module()
    module.weights = list({id(v): v for v in function.variables}.values())
    return module


def write_savedmodel(model: keras.Model, classes: list[str], folder: Path) -> None:
    """A SavedModel for TF Serving with the serving_default (pixels) and serving_bytes (encoded images) signatures."""
    probabilities = pixels_to_probabilities(model)
    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=PIXELS_INPUT)])
    def from_pixels(pixels):
        scores = probabilities(pixels)[PROBABILITIES_OUTPUT]
        # One row of names per image: TF Serving's row format ("instances") needs every output batched.
        names = tf.tile(tf.constant(classes)[tf.newaxis], [tf.shape(scores)[0], 1])
        return {PROBABILITIES_OUTPUT: scores, CLASSES_OUTPUT: names}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def from_bytes(image_bytes):
        pixels = tf.map_fn(lambda encoded: decode_image(encoded, size), image_bytes,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return from_pixels(pixels)

    signatures = {"serving_default": from_pixels.get_concrete_function(),
                  BYTES_SIGNATURE: from_bytes.get_concrete_function()}
    module = holding_variables_of(signatures["serving_default"])
    tf.saved_model.save(module, str(folder), signatures=signatures)


def write_onnx(model: keras.Model, path: Path) -> None:
    """An ONNX model (tf2onnx, as Keras' own ONNX export uses) for onnxruntime."""
    tf2onnx = require("tf2onnx", "onnx")
    probabilities = pixels_to_probabilities(model)
    tf2onnx.convert.from_function(probabilities, input_signature=probabilities.input_signature,
                                  output_path=str(path))


def write_litert(model: keras.Model, path: Path) -> None:
    """A LiteRT (TensorFlow Lite) flatbuffer, for phones and ai_edge_litert's interpreter."""
    function = pixels_to_probabilities(model).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], holding_variables_of(function))
    # Built-in ops only: a model needing TensorFlow's own ops (the Flex delegate) would not run on LiteRT's
    # standard runtime, so the conversion fails here rather than on the phone.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path.write_bytes(converter.convert())


def write_export(model: keras.Model, classes: list[str], fmt: str, folder: Path) -> Path:
    """Write the model in one format, and classes.json, into folder (which exists); the model file's path."""
    target = folder / MODEL_FILES[fmt]
    if fmt == "savedmodel":
        write_savedmodel(model, classes, target)
    elif fmt == "onnx":
        write_onnx(model, target)
    elif fmt == "litert":
        write_litert(model, target)
    else:
        raise ValueError(f"format {fmt!r} is not one tuneflow exports; choose one of {', '.join(FORMATS)}")
    (folder / CLASSES_FILE).write_text(json.dumps(classes, indent=2) + "\n")
    return target


def export_model(model_folder: Path, fmt: str, target: Path) -> Path:
    """Export the model of a model folder (a version or a run) into target/, which appears only once complete.

    Returns the exported model file (or SavedModel folder) inside target.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one tuneflow exports; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require("tf2onnx", fmt)  # before minutes of loading: say at once what is missing
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{str(target)!r} already exists; remove it or export into another folder (-o DIR)")
    model, classes = load_classifier(model_folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(target) as staging:
        written = write_export(model, classes, fmt, staging)
    return target / written.name
