"""What each `tuneflow` command does once its options are parsed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from tuneflow.cli.config_options import config_from_options, describe_validation_error
from tuneflow.cli.prefect_server import start_prefect_api
from tuneflow.config import (
    RetrainConfig,
    TrainingSettings,
)
from tuneflow.formatting import UNDEFINED, byte_size, percent
from tuneflow.storage import (
    DEFAULT_DATA_ROOT,
    EXPORTS_FOLDER,
    RUNS_FOLDER,
    SAMPLE_FOLDER,
)

DEMO_DATA_ROOT = DEFAULT_DATA_ROOT
SAMPLE_ARCHIVE = Path(SAMPLE_FOLDER) / "dataset.zip"
DEMO_ARCHIVE = DEMO_DATA_ROOT / SAMPLE_ARCHIVE
# Sized to finish well inside a few minutes on 2 CPU cores.
DEMO_SAMPLE = {"images_per_class": 40, "image_size": 96}
DEMO_TRAINING = {"image_size": 48, "batch_size": 16, "epochs": 5}
DEMO_PRETRAINED_TRAINING = {"image_size": 96, "batch_size": 16, "epochs": 3, "fine_tune_epochs": 2}

# `tuneflow predict current ...`: the model in use, DATA_ROOT/models/current.
CURRENT_MODEL = "current"


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
    from tuneflow.evaluation.predict import predict_target
    from tuneflow.training.model import load_classifier

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
    from tuneflow.dataset.sample import write_sample_dataset
    from tuneflow.fetch.weights import WeightsUnavailableError, download_imagenet_weights

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
