"""The `tuneflow` command: sample, retrain, predict, export, demo, runs, gpu-check, ops.

`retrain`'s options are generated from RetrainConfig's fields, so the CLI, the Prefect UI form and the config
can never disagree about a setting's name, meaning or default.
"""

from __future__ import annotations

import argparse

from tuneflow.cli.commands import (
    CURRENT_MODEL,
    DEMO_ARCHIVE,
    DEMO_DATA_ROOT,
    command_demo,
    command_export,
    command_gpu_check,
    command_predict,
    command_retrain,
    command_runs,
    command_sample,
)
from tuneflow.cli.config_options import add_config_options
from tuneflow.config import (
    StorageSettings,
)
from tuneflow.ops.cli import add_ops_parser
from tuneflow.storage import (
    DATA_ROOT_VARIABLE,
    EXPORTS_FOLDER,
    default_data_root,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneflow", description="Keep an image classifier fine-tuned on your own photos (ResNet50 + Prefect)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    retrain = commands.add_parser(
        "retrain",
        help="run the retrain flow: dataset.zip -> split -> fine-tune ResNet50 -> evaluate -> report",
        description="Run the retrain flow once. Every run writes only under DATA_ROOT/runs/<run id>/.",
    )
    add_config_options(retrain)
    retrain.set_defaults(handler=command_retrain)

    predict = commands.add_parser(
        "predict",
        help="class probabilities for an image (sorted list) or a folder/zip of images (CSV)",
        description="For one image, print its class probabilities sorted high to low, as the reference notebook "
        "did. For a folder (searched recursively) or a zip, write one CSV row per image: path, predicted_class, "
        "confidence, the top classes and every class probability. Each image is read as training reads the "
        "photos of a dataset.zip: turned upright per its EXIF orientation and converted to RGB (grayscale, CMYK, "
        "16-bit, transparent). Images that cannot be read (HEIC, RAW, damaged files) are listed on stderr with "
        "the reason and skipped.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help=f"`{CURRENT_MODEL}` (the model in use, DATA_ROOT/models/current), a model version folder "
        "(data/models/<version>) or a run folder (data/runs/<run id>)",
    )
    predict.add_argument("images", metavar="IMAGES", help="a JPEG, PNG, WebP, AVIF, TIFF, GIF or BMP file, a folder "
                         "of them or a .zip")
    predict.add_argument("--output", "-o", metavar="CSV", help="write the CSV here instead of stdout (folders, zips)")
    predict.add_argument("--data-root", default=str(default_data_root()),
                         help=f"where `{CURRENT_MODEL}` is looked up. Default: ${DATA_ROOT_VARIABLE} when set, else data.")
    predict.set_defaults(handler=command_predict)

    export = commands.add_parser(
        "export",
        help="export a model version for serving: SavedModel (TF Serving), ONNX (onnxruntime) or LiteRT (phones)",
        description="Export a model without its augmentation, into a folder that appears only once complete, with "
        "classes.json beside the model. Every format takes a batch of RGB uint8 pixels of the model's image size "
        "(input `pixels`) and gives the class probabilities (`probabilities`) in the order of classes.json; the "
        "SavedModel (serving_default) also returns the class names and has a second signature, serving_bytes, "
        "on encoded JPEG/PNG bytes (`image_bytes`). The promoted model is exported for TF Serving by itself "
        "(DATA_ROOT/serving); this command is for any version, by hand. ONNX needs tuneflow's export extra "
        "(pip install 'tuneflow[export]').",
    )
    export.add_argument("model", metavar="VERSION", help=f"`{CURRENT_MODEL}` (the model in use), a model version "
                        "folder (data/models/<version>) or a run folder (data/runs/<run id>)")
    # tuneflow.registry.export.FORMATS, not imported here: it imports TensorFlow (tests/test_export.py checks they agree).
    export.add_argument("--format", required=True, choices=("savedmodel", "onnx", "litert"),
                        help="savedmodel (TF Serving, tf.saved_model.load), onnx (onnxruntime) or litert (.tflite)")
    export.add_argument("--output", "-o", metavar="DIR", help="the folder to create (it must not exist). Default: "
                        f"DATA_ROOT/{EXPORTS_FOLDER}/<version>-<format>.")
    export.add_argument("--data-root", default=str(default_data_root()),
                        help=f"where `{CURRENT_MODEL}` is looked up and exports go. Default: ${DATA_ROOT_VARIABLE} "
                        "when set, else data.")
    export.set_defaults(handler=command_export)

    sample = commands.add_parser(
        "sample",
        help="generate the sample dataset.zip (procedurally drawn dishes, Food-101 layout)",
        description="Write a deterministic dataset.zip of drawn dishes in Food-101's layout: "
        "food-101/images/<class>/<id>.jpg plus food-101/meta/.",
    )
    sample.add_argument("path", nargs="?", default=str(DEMO_ARCHIVE), help=f"where to write the zip. Default: {DEMO_ARCHIVE}.")
    sample.add_argument("--images-per-class", type=int, default=60, help="images drawn per class. Default: 60.")
    sample.add_argument("--image-size", type=int, default=128, help="side of each image in pixels. Default: 128.")
    sample.add_argument("--seed", type=int, default=0, help="drawing seed; the same seed gives the same zip. Default: 0.")
    sample.set_defaults(handler=command_sample)

    demo = commands.add_parser(
        "demo",
        help="generate the sample dataset and run the flow on it end to end",
        description="Generate the sample dataset and run the retrain flow on it. Uses the ImageNet weights when "
        "they can be downloaded; where they cannot, says so and trains from random weights (the demo only).",
    )
    demo.add_argument("--data-root", default=str(DEMO_DATA_ROOT), help=f"where the sample and the run go. Default: {DEMO_DATA_ROOT}.")
    demo.set_defaults(handler=command_demo)

    runs = commands.add_parser(
        "runs",
        help="list the runs with their size and accuracy, or prune old runs' heavy files",
        description="`tuneflow runs` lists every run under DATA_ROOT/runs: finished, unfinished (resumable) or "
        "pruned, its size on disk, the heavy part of it (dataset, decoded cache, checkpoints), its validation "
        "accuracy and whether it was promoted. `tuneflow runs prune` keeps the heavy files of the newest --keep "
        "finished runs and removes the others' (models, reports, predictions, metrics and manifests stay), and "
        "every finished run's checkpoints (only for resuming), then cached preparations and Drive downloads no "
        "remaining run uses. Each run does this itself at its end, with storage.keep_runs.",
    )
    runs.add_argument("action", nargs="?", choices=("list", "prune"), default="list", help="list (default) or prune")
    runs.add_argument("--keep", type=int, default=StorageSettings().keep_runs,
                      help=f"finished runs that keep their heavy files. Default: {StorageSettings().keep_runs}.")
    runs.add_argument("--dry-run", action="store_true", help="with prune: say what would go, remove nothing")
    runs.add_argument("--data-root", default=str(default_data_root()),
                      help=f"where the runs are. Default: ${DATA_ROOT_VARIABLE} when set, else data.")
    runs.set_defaults(handler=command_runs)

    gpu_check = commands.add_parser(
        "gpu-check",
        help="measure what limits this worker: the training step, the input pipeline, and which is slower",
        description="Run on a new worker: lists the devices TensorFlow sees, times ResNet50 training steps on "
        "synthetic images with the precision and XLA training would apply (both read back from the compiled "
        "model: 'XLA: on' only when it really compiled), times the input pipeline on this machine's cores (first "
        "epoch and later ones) on photos of a realistic mix or --photos, and says whether the worker is "
        "input-bound or compute-bound and what to change.",
    )
    gpu_check.add_argument("--image-size", default="224", help="pixels per side. Default: 224.")
    gpu_check.add_argument("--batch-size", default="64", help="images per step. Default: 64.")
    gpu_check.add_argument("--steps", type=int, default=20, help="timed training steps. Default: 20.")
    gpu_check.add_argument("--precision", default="auto", help="auto, float32, mixed_float16 or mixed_bfloat16; "
                           "auto: mixed_bfloat16 on compute capability 8.0+, mixed_float16 on 7.x, float32 "
                           "elsewhere. Default: auto.")
    gpu_check.add_argument("--jit-compile", default="auto", help="XLA: auto (on where a GPU trains, off on CPUs), "
                           "true or false. Default: auto.")
    gpu_check.add_argument("--trainable", choices=("all", "head"), default="all",
                           help="time the fine-tune phase (every layer trainable) or the head phase. Default: all.")
    gpu_check.add_argument("--photos", default=None, help="a prepared dataset or folder of photos to time the "
                           "input pipeline on. Default: generated photos of a realistic mix.")
    gpu_check.add_argument("--photo-count", type=int, default=250,
                           help="how many photos to generate without --photos. Default: 250.")
    gpu_check.add_argument("--no-pipeline", action="store_true", help="time the training step only.")
    gpu_check.set_defaults(handler=command_gpu_check)

    add_ops_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    return options.handler(options)
