"""The `tuneflow` command: sample, retrain, predict, export, demo, runs, gpu-check, ops.

`retrain`'s options are generated from RetrainConfig's fields, so the CLI, the Prefect UI form and the config
can never disagree about a setting's name, meaning or default.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tuneflow.config import (
    DataSettings,
    DriveSettings,
    PromotionSettings,
    RetrainConfig,
    ServingSettings,
    StorageSettings,
    TrainingSettings,
)
from tuneflow.formatting import UNDEFINED, byte_size, percent
from tuneflow.ops.cli import add_ops_parser
from tuneflow.storage import (
    DATA_ROOT_VARIABLE,
    DEFAULT_DATA_ROOT,
    EXPORTS_FOLDER,
    RUNS_FOLDER,
    SAMPLE_FOLDER,
    default_data_root,
)

DEMO_DATA_ROOT = DEFAULT_DATA_ROOT
SAMPLE_ARCHIVE = Path(SAMPLE_FOLDER) / "dataset.zip"
DEMO_ARCHIVE = DEMO_DATA_ROOT / SAMPLE_ARCHIVE
# Sized to finish well inside a few minutes on 2 CPU cores.
DEMO_SAMPLE = {"images_per_class": 40, "image_size": 96}
DEMO_TRAINING = {"image_size": 48, "batch_size": 16, "epochs": 5}
DEMO_PRETRAINED_TRAINING = {"image_size": 96, "batch_size": 16, "epochs": 3, "fine_tune_epochs": 2}

# A first start of Prefect's temporary server creates its database; no machine of ours took a minute.
PREFECT_FIRST_START_TIMEOUT_S = 300
PREFECT_START_NOTICE_EVERY_S = 15

# `tuneflow predict current ...`: the model in use, DATA_ROOT/models/current.
CURRENT_MODEL = "current"

# (config section, settings model); None is the top level of RetrainConfig.
CONFIG_SECTIONS: list[tuple[str | None, type[BaseModel]]] = [
    (None, RetrainConfig),
    ("data", DataSettings),
    ("training", TrainingSettings),
    ("drive", DriveSettings),
    ("promotion", PromotionSettings),
    ("storage", StorageSettings),
    ("serving", ServingSettings),
]
NESTED_FIELDS = {section for section, _ in CONFIG_SECTIONS if section}


def _option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_name_list(field: FieldInfo) -> bool:
    """A list of names (classes, exclude_classes): given on the command line comma-separated."""
    return list[str] in (field.annotation, *typing.get_args(field.annotation))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, help text and default taken from the field itself."""
    for section, model in CONFIG_SECTIONS:
        group = parser.add_argument_group(f"{section} settings" if section else "run settings")
        for name, field in model.model_fields.items():
            if section is None and name in NESTED_FIELDS:
                continue
            default = field.get_default(call_default_factory=True)
            if default is None:
                default = {"classes": "all", "exclude_classes": "none"}.get(name, "unset")
            if isinstance(default, list):
                default = ",".join(default)
            suffix = " (comma-separated)" if _is_name_list(field) else ""
            if field.annotation is bool:  # a switch: --force, not --force true; --no-reuse-prepared for one that is on
                group.add_argument(
                    _option_name(name if default is False else f"no_{name}"),
                    dest=f"{section}.{name}" if section else name, action="store_const", const=default is False,
                    help=field.description,
                )
                continue
            group.add_argument(
                _option_name(name),
                dest=f"{section}.{name}" if section else name,
                required=field.is_required(),
                metavar=name.upper(),
                help=f"{field.description}{suffix} Default: {default}." if not field.is_required() else field.description,
            )


def config_from_options(options: argparse.Namespace) -> RetrainConfig:
    """Collect the given options into the nested config shape and validate it."""
    values: dict = {section: {} for section in NESTED_FIELDS}
    sections = dict(CONFIG_SECTIONS)
    for key, value in vars(options).items():
        if value is None or key in {"command", "handler"}:
            continue
        if "." in key:
            section, name = key.split(".", 1)
            listed = _is_name_list(sections[section].model_fields[name])
            values[section][name] = [c for c in value.split(",") if c.strip()] if listed else value
        else:
            values[key] = value
    return RetrainConfig.model_validate(values)


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"  {location}: {problem['msg'].removeprefix('Value error, ')}")
    return "invalid settings:\n" + "\n".join(lines)


def start_prefect_api() -> None:
    """Give flow runs a Prefect API before any heavy work starts, waiting as long as a first start takes.

    With no PREFECT_API_URL, Prefect starts a temporary server for the first flow run and gives it
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s) to answer. On a machine where Prefect has never run,
    that start also creates and migrates the SQLite database under PREFECT_HOME: 8 s on an idle 2-core machine,
    16 s with both cores busy (measured), more on slower CPUs, so a first `tuneflow demo` died with "Timed out
    while attempting to connect to ephemeral Prefect API server". Started here, before TensorFlow is imported and
    the sample drawn (which would compete with it for the CPU), with minutes to answer and a line saying what it
    waits for; the flow run then uses this same server.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client takes for its ephemeral server
    timeout_s = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), PREFECT_FIRST_START_TIMEOUT_S)
    database_exists = any(Path(PREFECT_HOME.value()).glob("*.db"))
    print(
        "tuneflow: PREFECT_API_URL is not set, so starting a temporary Prefect server for this run"
        + ("" if database_exists else f" (first start: creating its database in {PREFECT_HOME.value()})")
        + " ...",
        file=sys.stderr,
        flush=True,
    )
    failure: list[BaseException] = []

    def start() -> None:
        try:
            server.start(timeout=timeout_s)
        except BaseException as error:  # re-raised below, in the main thread
            failure.append(error)

    starting = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    started = time.monotonic()
    starting.start()
    while starting.is_alive():
        starting.join(PREFECT_START_NOTICE_EVERY_S)
        if starting.is_alive():
            print(f"tuneflow: still waiting for the Prefect server to answer ({time.monotonic() - started:.0f} s, "
                  f"giving it up to {timeout_s} s)", file=sys.stderr, flush=True)
    if failure:
        raise RuntimeError(
            f"the temporary Prefect server did not start within {timeout_s} s ({failure[0]}). Start a server "
            "yourself (`prefect server start`, or `make stack`) and set PREFECT_API_URL, or raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        ) from failure[0]
    print(f"tuneflow: Prefect server ready after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def run_retrain(config: RetrainConfig):
    start_prefect_api()
    from tuneflow.flows.retrain import retrain  # imports TensorFlow and Prefect: only when a run is asked for

    return retrain(config)


def command_retrain(options: argparse.Namespace) -> int:
    try:
        config = config_from_options(options)
    except ValidationError as error:
        print(f"tuneflow retrain: {describe_validation_error(error)}", file=sys.stderr)
        return 2
    summary = run_retrain(config)
    print(f"validation accuracy {percent(summary.accuracy)}; report: {summary.html_report_path}")
    print(f"{'promoted' if summary.promoted else 'not promoted'}: {summary.promotion_reason}")
    return 0


def format_probabilities(classes: list[str], probabilities) -> str:
    """The notebook's output: [('apple_pie', 0.9993), ('french_toast', 0.00065), ...], high to low."""
    ranked = sorted(zip(classes, (float(p) for p in probabilities)), key=lambda pair: pair[1], reverse=True)
    return repr([(name, float(f"{p:.4g}")) for name, p in ranked])


def resolve_model(model: str, data_root: Path) -> Path:
    """A run folder, a model version folder, or the word `current` (the model in use under data_root)."""
    if model == CURRENT_MODEL:
        from tuneflow.registry.versions import CURRENT_POINTER, current_version, models_dir

        if current_version(data_root) is None:
            raise FileNotFoundError(
                f"no model is in use yet under {models_dir(data_root)}; run `tuneflow retrain` first, or give a run "
                "folder (data/runs/<run id>) or a model version (data/models/<version>)"
            )
        return models_dir(data_root) / CURRENT_POINTER
    return Path(model)


def command_predict(options: argparse.Namespace) -> int:
    from tuneflow.training.model import load_classifier
    from tuneflow.evaluation.predict import predict_target

    target = Path(options.images)
    if not target.exists():
        print(f"tuneflow predict: {str(target)!r} does not exist; give an image, a folder of images or a .zip",
              file=sys.stderr)
        return 2
    try:
        model, classes = load_classifier(resolve_model(options.model, Path(options.data_root)))
    except FileNotFoundError as error:
        print(f"tuneflow predict: {error}", file=sys.stderr)
        return 2
    predictions, listing = predict_target(model, classes, target)
    for skipped in predictions.unreadable:
        print(f"tuneflow predict: cannot read {skipped.name!r} as an image: {skipped.reason}", file=sys.stderr)
    if listing.ignored:
        shown = ", ".join(listing.ignored[:5]) + (", ..." if len(listing.ignored) > 5 else "")
        print(f"tuneflow predict: ignored {len(listing.ignored)} files that are not images: {shown}", file=sys.stderr)
    table = predictions.table
    if table.empty:
        print(f"tuneflow predict: no image in {str(target)!r} could be predicted", file=sys.stderr)
        return 2
    if target.is_file() and len(listing.names) == 1 and listing.names[0] == str(target):
        row = table.iloc[0]
        print(format_probabilities(classes, [row[f"p_{name}"] for name in classes]))
        return 0
    if options.output:
        table.to_csv(options.output, index=False)
        print(f"tuneflow predict: wrote {len(table)} predictions to {options.output}", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    if predictions.unreadable:
        print(f"tuneflow predict: predicted {len(table)} images; {len(predictions.unreadable)} could not be read "
              "(listed above)", file=sys.stderr)
    return 0


def command_export(options: argparse.Namespace) -> int:
    from tuneflow.registry.export import ExportUnavailableError, export_model
    from tuneflow.training.model import find_model_folder

    data_root = Path(options.data_root)
    try:
        model_folder = find_model_folder(resolve_model(options.model, data_root))
        version = model_folder.resolve().name if model_folder.name != "model" else model_folder.parent.resolve().name
        target = Path(options.output) if options.output else data_root / EXPORTS_FOLDER / f"{version}-{options.format}"
        exported = export_model(model_folder, options.format, target)
    except (FileNotFoundError, FileExistsError, ExportUnavailableError) as error:
        print(f"tuneflow export: {error}", file=sys.stderr)
        return 2
    print(f"exported {version} as {options.format}: {exported} (classes: {exported.parent / 'classes.json'})")
    return 0


def command_sample(options: argparse.Namespace) -> int:
    from tuneflow.dataset.sample import write_sample_dataset

    path = write_sample_dataset(
        Path(options.path), images_per_class=options.images_per_class, image_size=options.image_size, seed=options.seed
    )
    print(f"wrote {path} ({byte_size(path.stat().st_size)})")
    return 0


def command_demo(options: argparse.Namespace) -> int:
    from tuneflow.fetch.weights import WeightsUnavailableError, download_imagenet_weights
    from tuneflow.dataset.sample import write_sample_dataset

    started = time.perf_counter()
    start_prefect_api()  # first, while nothing else needs the CPU
    data_root = Path(options.data_root)
    archive = write_sample_dataset(data_root / SAMPLE_ARCHIVE, **DEMO_SAMPLE)
    print(f"demo: generated the sample dataset {archive}")
    try:
        weights_file = download_imagenet_weights()
        weights, training = "imagenet", DEMO_PRETRAINED_TRAINING
        print(f"demo: using the ImageNet weights from {weights_file}")
    except WeightsUnavailableError as error:
        weights, training = "none", DEMO_TRAINING
        print(
            "demo: *** the ImageNet weights are unreachable from this machine ***\n"
            f"demo: {error}\n"
            "demo: so THIS DEMO trains ResNet50 from random weights (weights='none'); "
            "`tuneflow retrain` itself never falls back like this, it fails."
        )
    config = RetrainConfig(
        source=str(archive), data_root=data_root, training=TrainingSettings(weights=weights, **training)
    )
    summary = run_retrain(config)
    print(
        f"demo: done in {time.perf_counter() - started:.0f} s. Weights: "
        f"{'ImageNet' if weights == 'imagenet' else 'random initialisation (ImageNet unreachable)'}.\n"
        f"demo: validation accuracy {percent(summary.accuracy)}\n"
        f"demo: report {summary.html_report_path}\n"
        f"demo: {'promoted' if summary.promoted else 'not promoted'}: {summary.promotion_reason}\n"
        f"demo: model  {summary.model_path}  (try: tuneflow predict --data-root {data_root} current IMAGE_OR_FOLDER)"
    )
    return 0


def command_runs(options: argparse.Namespace) -> int:
    from tuneflow.registry.versions import current_version
    from tuneflow.runs.retention import list_runs, prune_heavy_files

    data_root = Path(options.data_root)
    if options.action == "prune":
        removed = prune_heavy_files(data_root, options.keep, dry_run=options.dry_run)
        verb = "would remove" if options.dry_run else "removed"
        for item in removed:
            part = f": {item.part}" if item.part else ""
            print(f"{verb} {item.path} ({byte_size(item.bytes)}{part})")
        total = byte_size(sum(item.bytes for item in removed))
        print(f"{verb} {len(removed)} folder(s), {total}; the newest {options.keep} finished run(s) keep everything")
        return 0
    runs = list_runs(data_root)
    if not runs:
        print(f"no runs under {data_root / RUNS_FOLDER}")
        return 0
    in_use = current_version(data_root)
    print(f"{'run id':<24} {'status':<10} {'size':>9} {'heavy':>9} {'accuracy':>9}  promoted")
    for run in runs:
        status = "pruned" if run.pruned else ("finished" if run.finished else "unfinished")
        accuracy = percent(run.accuracy)
        promoted = {True: "yes", False: "no", None: UNDEFINED}[run.promoted] + (" (in use)" if run.run_id == in_use else "")
        print(f"{run.run_id:<24} {status:<10} {byte_size(run.size_bytes):>9} {byte_size(run.heavy_bytes):>9} "
              f"{accuracy:>9}  {promoted}")
    total = byte_size(sum(run.size_bytes for run in runs))
    print(f"{len(runs)} run(s), {total} in all (hard-linked photos counted once per run)")
    return 0


def command_gpu_check(options: argparse.Namespace) -> int:
    from tuneflow.training.gpu_check import describe, measure_input_pipeline, measure_training_speed

    try:
        settings = TrainingSettings(
            weights="none", image_size=options.image_size, batch_size=options.batch_size,
            precision=options.precision, jit_compile=options.jit_compile,
        )
    except ValidationError as error:
        print(f"tuneflow gpu-check: {describe_validation_error(error)}", file=sys.stderr)
        return 2
    if options.photos is not None and not Path(options.photos).is_dir():
        print(f"tuneflow gpu-check: --photos {options.photos!r} is not a folder; give a prepared dataset "
              "(data_root/runs/<run id>/dataset) or a folder of photos", file=sys.stderr)
        return 2
    speed = measure_training_speed(settings, steps=options.steps, trainable=options.trainable)
    pipeline = None
    if not options.no_pipeline:
        try:
            pipeline = measure_input_pipeline(settings, options.photos and Path(options.photos), options.photo_count)
        except ValueError as error:
            print(f"tuneflow gpu-check: {error}", file=sys.stderr)
            return 2
    print(describe(speed, pipeline))
    return 0


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
        "finished runs and removes the others' (models, reports, predictions, metrics and manifests stay), then "
        "cached preparations and Drive downloads no remaining run uses. Each run does this itself at its end, "
        "with storage.keep_runs.",
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


if __name__ == "__main__":
    sys.exit(main())
