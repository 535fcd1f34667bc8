"""The serving folder: the model in use as TF Serving loads it, a new version on every promotion.

    serving/<name>/<N>/                          a SavedModel (tuneflow.registry.export), N = 1, 2, 3, ... one per promotion
    serving/<name>/<N>/assets.extra/tuneflow.json    which model version it is, and its classes
    serving/.incoming-<name>-<token>/            a version being written (outside <name>/, so never looked at)

TF Serving pointed at serving/<name> (MODEL_NAME=<name>) polls it and serves the highest N, so each promotion
reaches it by itself. A version is written in full under the incoming name, flushed to disk, and renamed to the
next number (same filesystem: rename(2) is atomic): TF Serving never sees a half-written version. The newest
`keep_serving_versions` are kept, to roll back by hand (rename the bad one away); older ones are renamed out of
the folder, then deleted.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from tuneflow.config import ServingSettings
from tuneflow.registry.export import write_savedmodel
from tuneflow.training.model import load_classifier
from tuneflow.registry.versions import fsync_path
from tuneflow.storage import SERVING_FOLDER

SOURCE_FILE = Path("assets.extra") / "tuneflow.json"


def serving_dir(data_root: Path, settings: ServingSettings) -> Path:
    """The folder TF Serving watches: data_root/serving/<name>."""
    return Path(data_root) / SERVING_FOLDER / settings.serving_name


def list_serving_versions(data_root: Path, settings: ServingSettings) -> list[int]:
    """The serving versions, lowest first."""
    folder = serving_dir(data_root, settings)
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def serving_source(version_dir: Path) -> dict:
    """What a serving version holds: {"model_version": ..., "classes": [...]}."""
    return json.loads((Path(version_dir) / SOURCE_FILE).read_text())


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under folder, so a power cut after the rename leaves a whole version."""
    for path in [*sorted(folder.rglob("*"), reverse=True), folder]:
        fsync_path(path)


def stage_serving_version(
    model_dir: Path, model_version: str, data_root: Path, settings: ServingSettings
) -> Path | None:
    """Write the model as a SavedModel into a new incoming folder; None when the newest version already holds it.

    (A resumed run promotes the model it stored before its interruption again: that is no new model to serve.)
    """
    versions = list_serving_versions(data_root, settings)
    folder = serving_dir(data_root, settings)
    if versions and serving_source(folder / str(versions[-1])).get("model_version") == model_version:
        return None
    staging = folder.parent / f".incoming-{settings.serving_name}-{secrets.token_hex(3)}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        model, classes = load_classifier(model_dir)
        write_savedmodel(model, classes, staging)
        (staging / SOURCE_FILE).parent.mkdir(exist_ok=True)
        (staging / SOURCE_FILE).write_text(json.dumps({"model_version": model_version, "classes": classes},
                                                      indent=2) + "\n")
        _fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def publish_serving_version(staged: Path, data_root: Path, settings: ServingSettings) -> Path:
    """Rename a staged version to the next number, then retire the versions beyond keep_serving_versions."""
    folder = serving_dir(data_root, settings)
    folder.mkdir(parents=True, exist_ok=True)
    versions = list_serving_versions(data_root, settings)
    final = folder / str(versions[-1] + 1 if versions else 1)
    staged.rename(final)
    for old in list_serving_versions(data_root, settings)[:-settings.keep_serving_versions]:
        # Out of TF Serving's sight first, so it never reads a version while it is being deleted.
        retired = folder.parent / f".retired-{settings.serving_name}-{old}-{secrets.token_hex(3)}"
        (folder / str(old)).rename(retired)
        shutil.rmtree(retired)
    return final


def discard_staged(staged: Path | None) -> None:
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)
