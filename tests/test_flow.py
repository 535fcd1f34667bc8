"""The retrain flow end to end on tiny generated data, under a real (temporary) Prefect server.

Two revisions of a dataset through two runs into one data root, with one seed: revision 1 from the local zip with
the test's ResNet50 weights file (model A, promoted), then revision 2 from (emulated) Google Drive, with the
weights on Drive too: revision 1 plus 20 % new photos in one class and one photo removed from another, as a week
of uploads leaves it. The real pydrive2 client authenticates with a generated service-account key and downloads through
`tests/drive_emulator.py`; the second run must record which Drive file, revision and MD5 it trained on, and grade
model A only on validation photos A never trained on. Its report step fails once (a full disk) and the run is
retried as the dashboard's Retry button does: the retry must reuse the download and the training.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from PIL import Image, ImageOps

from tests.drive_emulator import DriveEmulator
from tests.drive_fixtures import (  # noqa: F401 (fixtures)
    SERVICE_ACCOUNT_EMAIL, TestKey, drive_emulator, service_account_info, test_key,
)
from tests.records import head_only_training
from tuneflow.cli import main
from tuneflow.config import DataSettings, DriveSettings, RetrainConfig, ServingSettings, TrainingSettings
from tuneflow.records import RunSummary
from tuneflow.report.text import escape
from tuneflow.tasks.dashboard import ArtifactKeys

pytestmark = pytest.mark.slow

TINY_TRAINING = TrainingSettings(weights="none", image_size=32, batch_size=4, epochs=1)
RUN_FILES = [
    "config.json", "manifest.csv", "model.keras", "classes.json", "history.csv", "metrics.json", "predictions.csv",
    "report.md", "report.html",
]  # fmt: skip


# The artifact keys of runs started outside a deployment with no dataset_name (the first run's).
LOCAL_KEYS = ArtifactKeys(name="local")


def tiny_config(archive: Path, data_root: Path, **changes) -> RetrainConfig:
    return RetrainConfig(source=str(archive), data_root=data_root, **{"training": TINY_TRAINING, **changes})


class AllRecords(logging.Handler):
    """Every record from the root and Prefect loggers (Prefect's do not propagate to the root)."""

    loggers = ("", "prefect")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


GROWN_CLASS, SHRUNK_CLASS, UNCHANGED_CLASS = "pizza", "apple_pie", "sashimi"


def second_revision(archive: Path) -> bytes:
    """Revision 1 with two new photos in GROWN_CLASS (20 % of its 10) and the first photo of SHRUNK_CLASS gone.

    The new photos are mirror images of two existing ones: new bytes, as a new photo of the same dish would be.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(buffer, "w") as target:
        names = source.namelist()
        removed = sorted(name for name in names if f"/{SHRUNK_CLASS}/" in name)[0]
        for name in names:
            if name != removed:
                target.writestr(name, source.read(name))
        for number, name in enumerate(sorted(name for name in names if f"/{GROWN_CLASS}/" in name)[:2]):
            mirrored = io.BytesIO()
            ImageOps.mirror(Image.open(io.BytesIO(source.read(name)))).save(mirrored, "JPEG", quality=90)
            target.writestr(name.rsplit("/", 1)[0] + f"/new-upload-{number}.jpg", mirrored.getvalue())
    return buffer.getvalue()


@dataclass
class OnDrive:
    """The emulator the second run fetched from, what it holds, and every log record since it started."""

    emulator: DriveEmulator
    file_id: str
    weights_id: str
    archive: bytes  # what the Drive file holds: the second revision
    config: RetrainConfig
    logs: AllRecords


@pytest.fixture(scope="module")
def on_drive(tiny_archive, resnet50_weights_file, test_key: TestKey, tmp_path_factory) -> Iterator[OnDrive]:
    """The tiny archive and random ResNet50 (no top) weights on the Drive emulator: stand-ins for the photos and
    the ImageNet weights a team puts on Drive; the config of a run that fetches both, with a pasted share link."""
    # Prefect configures logging when its main module is first imported, dropping handlers added before.
    import prefect.main  # noqa: F401

    logs = AllRecords()
    with pytest.MonkeyPatch.context() as patch, DriveEmulator() as emulator:
        # A proxy set on the machine must not intercept loopback requests.
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        emulator.register_service_account(SERVICE_ACCOUNT_EMAIL, test_key.private_key.public_key())
        key_file = tmp_path_factory.mktemp("drive-key") / "service-account.json"
        key_file.write_text(json.dumps(service_account_info(test_key, emulator.token_uri)))
        revision_2 = tmp_path_factory.mktemp("revision-2") / "dataset.zip"
        revision_2.write_bytes(second_revision(tiny_archive))
        file_id = emulator.add_file("dataset.zip", revision_2)
        weights_id = emulator.add_file("resnet50-notop.weights.h5", resnet50_weights_file)
        config = RetrainConfig(
            source=f"https://drive.google.com/file/d/{file_id}/view?usp=sharing",  # pasted as users copy it
            dataset_name="Food on Drive",  # its dashboard artifacts apart from the first run's (no name: "local")
            data_root=tmp_path_factory.mktemp("data"),
            training=TrainingSettings(weights=f"drive://{weights_id}", image_size=32, batch_size=4, epochs=1,
                                      fine_tune_epochs=0),
            drive=DriveSettings(key_file=key_file, api_endpoint=emulator.api_endpoint, http_timeout_s=10,
                                retry_base_delay_s=0.01),
            # One SavedModel export (the first run's) is enough for the serving test, and each costs ~10 s of CI.
            serving=ServingSettings(export_on_promotion=False),
        )
        for name in AllRecords.loggers:
            logging.getLogger(name).addHandler(logs)
        try:
            yield OnDrive(emulator=emulator, file_id=file_id, weights_id=weights_id, archive=revision_2.read_bytes(),
                          config=config, logs=logs)
        finally:
            for name in AllRecords.loggers:
                logging.getLogger(name).removeHandler(logs)


@dataclass
class RetriedRun:
    """A run whose report step failed once, then retried from the dashboard."""

    summary: RunSummary
    flow_run_id: UUID
    first_attempt: str  # the failed attempt's state message
    drive_requests_during_retry: int


def retry_from_the_dashboard(flow, flow_run_id: UUID):
    """What the dashboard's Retry button and then a worker do: the failed flow run goes AwaitingRetry, and the same
    flow run runs again from the top with its parameters."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import AwaitingRetry

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, AwaitingRetry(message="Retry from the UI"))
        flow_run = client.read_flow_run(flow_run_id)
    return run_flow(flow, flow_run=flow_run, parameters=flow_run.parameters)


@pytest.fixture(scope="module")
def first_run(prefect_server, tiny_archive, on_drive, resnet50_weights_file) -> RunSummary:
    """Revision 1 from the local zip and weights file. Both runs train the head only (what the flow does around
    training is what is checked here; training from random weights, all of ResNet50 trainable, runs end to end in
    `make demo` and the field check)."""
    from tuneflow.flows.retrain import retrain

    return retrain(tiny_config(tiny_archive, on_drive.config.data_root,
                               training=head_only_training(resnet50_weights_file, batch_size=4, epochs=1)))


@pytest.fixture(scope="module")
def retried_second_run(first_run, on_drive) -> RetriedRun:
    """Revision 2 from Drive into the same data root; its report step finds the disk full once, and the failed run
    is retried from the dashboard."""
    import tuneflow.tasks.report as report_step
    from tuneflow.flows.retrain import retrain

    write_run_report, full = report_step.write_run_report, []

    def full_disk_once(content, run_dir):
        if not full:
            full.append(run_dir)
            raise OSError(28, "No space left on device", str(run_dir / "report.html"))
        return write_run_report(content, run_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_step, "write_run_report", full_disk_once)
        failed = retrain(on_drive.config, return_state=True)
        assert failed.is_failed() and full, failed
        requests = on_drive.emulator.count()
        summary = retry_from_the_dashboard(retrain, failed.state_details.flow_run_id)
    return RetriedRun(summary=summary, flow_run_id=failed.state_details.flow_run_id, first_attempt=failed.message,
                      drive_requests_during_retry=on_drive.emulator.count() - requests)


@pytest.fixture(scope="module")
def two_runs(first_run, retried_second_run):
    """Revision 1 from the local zip, then revision 2 from Drive, into one data root with one seed."""
    return first_run, retried_second_run.summary


def test_a_run_retried_after_its_report_failed_neither_downloads_nor_trains_again(first_run, retried_second_run,
                                                                                 on_drive):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    retried = retried_second_run
    assert "No space left on device" in retried.first_attempt
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[retried.flow_run_id])))
    states = defaultdict(list)  # step -> the state of each of its task runs, first attempt first
    for task_run in sorted(task_runs, key=lambda task_run: task_run.created):
        states[task_run.name.rsplit("-", 1)[0]].append(task_run.state.name)
    for step in ("open-run-folder", "fetch-dataset", "fetch-weights", "prepare-dataset", "fine-tune",
                 "evaluate-model"):
        assert states[step] == ["Completed", "Cached"], (step, dict(states))
    # Promotion and the report act again (the promotion keeps what the first attempt decided; test below).
    assert states["promote-model"] == ["Completed", "Completed"] and states["write-report"] == ["Failed", "Completed"]
    assert retried.drive_requests_during_retry == 0
    # The retry kept the first attempt's decision, a comparison with model A, instead of comparing with itself.
    recorded = json.loads((retried.summary.run_dir / "promotion.json").read_text())
    assert (retried.summary.promoted, retried.summary.promotion_reason) == (recorded["promoted"], recorded["reason"])
    assert f"for the model in use ({first_run.model_version})" in recorded["reason"]
    # Kept on the data root, where a retry on another worker finds them too.
    assert list((on_drive.config.data_root / "cache" / "results").iterdir())
    assert (retried.summary.run_dir / "report.md").is_file()


def split_listing(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir / "dataset")) for p in (run_dir / "dataset").rglob("*.jpg"))


def test_run_folder_holds_every_output(two_runs):
    summary = two_runs[0]
    for name in RUN_FILES:
        assert (summary.run_dir / name).is_file(), f"{name} missing from {summary.run_dir}"
    assert summary.run_dir.parent.name == "runs"
    assert json.loads((summary.run_dir / "classes.json").read_text()) == ["apple_pie", "pizza", "sashimi"]
    report = (summary.run_dir / "report.md").read_text()
    assert f"{summary.accuracy:.2%}" in report
    assert summary.report_path == summary.run_dir / "report.md"
    assert summary.html_report_path == summary.run_dir / "report.html"
    assert f"{summary.accuracy:.2%}" in summary.html_report_path.read_text()


def test_report_and_artifacts_summarise_the_data(two_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    report = (two_runs[0].run_dir / "report.md").read_text()
    data = report.split("## Data", 1)[1]
    assert "30 images from 33 files in the archive, split by seed; every file is listed" in data
    assert "| apple_pie   |       8 |     2 |      10 |" in data
    assert "| all classes |      24 |     6 |      30 |" in data
    assert "| ignored  | not-an-image-file |       3 |" in data  # Food-101's meta/*.txt
    # Escaped as every text of the report.md is: a markdown viewer shows "images/<class>/".
    assert "- layout: Food-101 (images/&lt;class&gt;/ + meta/) under food-101/" in data
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[LOCAL_KEYS.key("dataset-counts"),
                                                                        LOCAL_KEYS.key("dataset-manifest")]))
        )
    # The first run's tables, under the keys of runs with no dataset name outside a deployment.
    counts = [json.loads(artifact.data) for artifact in artifacts if artifact.key == LOCAL_KEYS.key("dataset-counts")]
    manifests = [json.loads(a.data) for a in artifacts if a.key == LOCAL_KEYS.key("dataset-manifest")]
    assert any({"class": "all classes", "train": 24, "val": 6, "total": 30} in table for table in counts)
    manifest = pd.read_csv(two_runs[0].run_dir / "manifest.csv", keep_default_na=False, dtype=str)
    assert len(manifest) == 33 and 33 in [len(table) for table in manifests]


def test_accuracy_is_the_share_of_correct_predictions(two_runs):
    run_dir = two_runs[0].run_dir
    predictions = pd.read_csv(run_dir / "predictions.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(predictions) == metrics["num_images"] == 6  # 2 of 10 per class held out, 3 classes
    assert metrics["accuracy"] == pytest.approx((predictions["true_class"] == predictions["predicted_class"]).mean())
    assert metrics["accuracy"] == pytest.approx(predictions["correct"].mean())
    probabilities = predictions[["p_apple_pie", "p_pizza", "p_sashimi"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (predictions["predicted_class"] == np.array(["apple_pie", "pizza", "sashimi"])[probabilities.argmax(1)]).all()
    assert metrics["data"]["md5"] and metrics["data"]["source"].endswith("dataset.zip")
    # What training applied, read back, not what was asked for: on this CPU precision=auto and jit_compile=auto
    # give float32 without XLA; report.md says the same.
    assert (metrics["training"]["precision"], metrics["training"]["xla_applied"]) == ("float32", False)
    assert "precision float32 (requested auto); XLA not applied (requested auto: off on CPUs" in (
        run_dir / "report.md").read_text()


def test_predict_matches_the_evaluation_row(two_runs, capsys):
    run_dir = two_runs[0].run_dir
    row = pd.read_csv(run_dir / "predictions.csv").iloc[0]
    assert main(["predict", str(run_dir), str(run_dir / "dataset" / row["path"])]) == 0
    printed = eval(capsys.readouterr().out.strip())  # the notebook's format: a list of (class, probability)
    assert [p for _, p in printed] == sorted((p for _, p in printed), reverse=True)
    for class_name, probability in printed:
        assert probability == pytest.approx(row[f"p_{class_name}"], rel=1e-3, abs=1e-6)


def side_of_each_photo(run_dir: Path) -> dict[str, str]:
    """SHA-256 -> train or val, from the run's manifest."""
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype=str, keep_default_na=False)
    kept = manifest[manifest["status"] == "kept"]
    return dict(zip(kept["sha256"], kept["split"]))


def test_model_a_is_graded_only_on_photos_it_never_trained_on(two_runs):
    from tuneflow.registry.versions import TRAINING_PHOTOS_FILE, current_version, list_versions, models_dir

    first, second = two_runs
    data_root = first.run_dir.parent.parent
    assert first.promoted and "no model was in use yet" in first.promotion_reason
    assert list_versions(data_root) == [first.model_version, second.model_version] == [first.run_dir.name,
                                                                                          second.run_dir.name]
    # A's training manifest, kept in its version folder, is exactly what run A trained on.
    a_trained = pd.read_csv(models_dir(data_root) / first.model_version / TRAINING_PHOTOS_FILE, dtype=str)
    a_sides = side_of_each_photo(first.run_dir)
    assert set(a_trained["sha256"]) == {sha for sha, side in a_sides.items() if side == "train"}
    # B's comparison file holds only B's validation photos that A never trained on...
    b_sides = side_of_each_photo(second.run_dir)
    b_manifest = pd.read_csv(second.run_dir / "manifest.csv", dtype=str, keep_default_na=False)
    sha_of_file = dict(zip(b_manifest["file"], b_manifest["sha256"]))
    in_use = pd.read_csv(second.run_dir / "current_model_predictions.csv")
    compared = {sha_of_file[path] for path in in_use["path"]}
    assert len(compared) == len(in_use) and not compared & set(a_trained["sha256"])
    b_val = {sha for sha, side in b_sides.items() if side == "val"}
    assert compared == b_val - set(a_trained["sha256"])
    # ... and says so everywhere a reader looks: metrics.json, the decision, report.md, report.html.
    left_out = len(b_val) - len(compared)
    paired = json.loads((second.run_dir / "metrics.json").read_text())["promotion"]["comparison"]
    assert (paired["compared"], paired["left_out"]) == (len(compared), left_out)
    assert paired["both_right"] + paired["only_new_right"] + paired["only_old_right"] + paired["both_wrong"] == len(compared)
    assert f"for the model in use ({first.model_version}) on the {len(compared)} validation photos" in second.promotion_reason
    report = (second.run_dir / "report.md").read_text()
    section = report.split("## Compared with the model in use", 1)[1].split("\n## ", 1)[0]
    assert f"on {len(compared)} validation photos it never trained on" in section
    assert f"| new model right | {paired['both_right']} | {paired['only_new_right']} |" in section
    assert f"| new model wrong | {paired['only_old_right']} | {paired['both_wrong']} |" in section
    assert "McNemar exact p" in section
    html = (second.run_dir / "report.html").read_text()
    assert f'<b id="compared-count">{len(compared)}</b>' in html and 'id="paired-table"' in html
    assert current_version(data_root) == second.current_version
    assert second.promotion_reason in report


def test_photos_keep_their_side_across_revisions(two_runs):
    """Adding two photos to pizza moves none of A's training photos into validation (its validation count stays
    2 of 12); removing one apple_pie photo can move at most one, the one that takes a removed photo's place."""
    first, second = (summary.run_dir for summary in two_runs)
    a_sides, b_sides = side_of_each_photo(first), side_of_each_photo(second)
    b_manifest = pd.read_csv(second / "manifest.csv", dtype=str, keep_default_na=False)
    b_class = dict(zip(b_manifest["sha256"], b_manifest["class"]))
    moved = {name: 0 for name in (GROWN_CLASS, SHRUNK_CLASS, UNCHANGED_CLASS)}
    for sha, side in b_sides.items():
        if a_sides.get(sha) == "train" and side == "val":
            moved[b_class[sha]] += 1
    removed_from_val = sum(1 for sha, side in a_sides.items() if sha not in b_sides and side == "val")
    assert moved[GROWN_CLASS] == 0 and moved[UNCHANGED_CLASS] == 0
    assert moved[SHRUNK_CLASS] <= removed_from_val
    unchanged = sorted(sha for sha in b_sides if b_class[sha] == UNCHANGED_CLASS)
    assert [a_sides[sha] for sha in unchanged] == [b_sides[sha] for sha in unchanged]


def test_split_is_stratified_and_keeps_every_photo(two_runs, tiny_archive):
    first = two_runs[0].run_dir
    for class_name in ["apple_pie", "pizza", "sashimi"]:
        assert len(list((first / "dataset" / "train" / class_name).iterdir())) == 8
        assert len(list((first / "dataset" / "val" / class_name).iterdir())) == 2
    with zipfile.ZipFile(tiny_archive) as archive:
        in_zip = {Path(name).name for name in archive.namelist() if name.endswith(".jpg")}
    assert {Path(p).name for p in split_listing(first)} == in_zip


def test_an_upload_already_trained_on_is_not_trained_again(two_runs, on_drive):
    """What a run the sensor asked for does when its revision was already trained: it ends at once, naming the
    version."""
    from tuneflow.flows.retrain import retrain

    second = two_runs[1]
    runs_before = sorted(second.run_dir.parent.iterdir())
    head = on_drive.emulator.files[on_drive.file_id].head
    again = retrain(on_drive.config, drive_file_id=on_drive.file_id, drive_revision=head.id)
    assert again.already_trained and again.model_version == second.model_version
    assert again.run_dir == second.run_dir and again.accuracy == pytest.approx(second.accuracy)
    assert f"revision {head.id} was already trained into model version {second.model_version}" in again.promotion_reason
    assert sorted(second.run_dir.parent.iterdir()) == runs_before  # no run folder, no download, no training
    assert any("this run trained nothing" in line for line in on_drive.logs.lines)


def test_resuming_a_run_whose_archive_changed_is_refused(prefect_server, tiny_archive, tmp_path):
    from tuneflow.fetch.archives import locate_local_archive
    from tuneflow.flows.retrain import retrain
    from tuneflow.runs.folders import ArchiveChangedError, check_archive_of_run

    interrupted = tmp_path / "data" / "runs" / "20261201-030000-abcdef"
    interrupted.mkdir(parents=True)
    check_archive_of_run(interrupted, locate_local_archive(str(tiny_archive)))  # what its first attempt recorded
    (interrupted / "config.json").write_text("{}")
    changed = tmp_path / "dataset.zip"
    changed.write_bytes(second_revision(tiny_archive))  # the file got a new upload before the resume
    config = tiny_config(changed, tmp_path / "data", resume_run_id=interrupted.name)
    old_md5, new_md5 = (locate_local_archive(str(path)).md5 for path in (tiny_archive, changed))
    with pytest.raises(ArchiveChangedError, match=f"MD5 {old_md5}.*MD5 {new_md5}.*Start a new run"):
        retrain(config)
    assert (interrupted / "config.json").read_text() == "{}"  # nothing of the interrupted run was overwritten


def test_second_run_gets_its_own_folder(two_runs):
    first, second = (summary.run_dir for summary in two_runs)
    assert first != second and first.parent == second.parent
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])


def test_second_run_records_the_drive_file_revision_and_md5_it_trained_on(two_runs, on_drive):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    second, drive, file_id = two_runs[1], on_drive.emulator, on_drive.file_id
    head = drive.files[file_id].head
    metrics = json.loads((second.run_dir / "metrics.json").read_text())
    assert metrics["data"]["drive_file_id"] == file_id
    assert metrics["data"]["drive_revision"] == head.id
    assert metrics["data"]["md5"] == head.md5
    assert metrics["data"]["source"] == f"drive://{file_id}"
    report = (second.run_dir / "report.md").read_text()
    # As markdown shows them: an ID such as "a_-b" holds a "_" that markdown escapes ("a\\_-b" renders "a_-b").
    assert f"| Drive file ID | {escape(file_id)} |" in report
    assert f"| Drive revision | {escape(head.id)} |" in report
    assert f"| archive MD5 | {head.md5} |" in report
    cached = on_drive.config.data_root / "cache" / "drive" / file_id / head.md5 / "dataset.zip"
    assert cached.read_bytes() == on_drive.archive
    assert second.weights == f"drive://{on_drive.weights_id}"

    with get_client(sync_client=True) as client:
        key = ArtifactKeys.for_dataset(on_drive.config.dataset_name).key("dataset-download")
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert artifacts and artifacts[0].type == "progress" and float(artifacts[0].data) == 100.0


def test_the_next_runs_fetch_finds_both_drive_files_in_the_cache(two_runs, on_drive):
    """The next run's fetch steps, in a flow of their own (no training again), download nothing."""
    from prefect import flow

    from tuneflow.tasks.fetch import fetch_dataset, fetch_weights

    @flow
    def fetch_again(config: RetrainConfig):
        return fetch_dataset(config.source, config.drive, config.data_root), fetch_weights(
            config.training.weights, config.drive, config.data_root
        )

    head = on_drive.emulator.files[on_drive.file_id].head
    media_requests = on_drive.emulator.count("media")
    again, weights_path = fetch_again(on_drive.config)
    assert on_drive.emulator.count("media") == media_requests
    cached = on_drive.config.data_root / "cache" / "drive" / on_drive.file_id / head.md5 / "dataset.zip"
    assert (again.path, again.drive_revision) == (cached.resolve(), head.id)
    assert weights_path.parent.parent.name == on_drive.weights_id


def test_the_private_key_reaches_no_log_and_no_run_file(two_runs, on_drive, test_key: TestKey):
    runs = on_drive.config.data_root / "runs"
    written = "\n".join(path.read_text(errors="replace") for path in runs.rglob("*.json"))
    written += "\n".join(path.read_text() for path in runs.rglob("*.md"))
    assert on_drive.logs.lines and written
    for text in ("\n".join(on_drive.logs.lines), written):
        assert not any(line in text for line in test_key.secret_lines), "the private key leaked into a log or a run file"


def test_missing_source_fails_with_its_path(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain

    with pytest.raises(FileNotFoundError, match="does not exist.*tuneflow sample"):
        retrain(tiny_config(tmp_path / "nope.zip", tmp_path / "data"))


def test_file_that_is_not_a_zip_is_refused(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain

    not_zip = tmp_path / "dataset.zip"
    not_zip.write_text("this is a text file")
    with pytest.raises(ValueError, match="is not a zip archive"):
        retrain(tiny_config(not_zip, tmp_path / "data"))


def test_unknown_class_lists_the_available_ones(prefect_server, tiny_archive, tmp_path):
    from tuneflow.flows.retrain import retrain

    config = tiny_config(tiny_archive, tmp_path / "data", data=DataSettings(classes=["apple_pie", "piza"]))
    with pytest.raises(ValueError, match=r"class 'piza' is not in the archive; it has \['apple_pie', 'pizza', 'sashimi'\]\. Did you mean 'pizza'\?"):
        retrain(config)


def test_archive_with_one_class_is_refused(prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain
    from tuneflow.dataset.sample import write_sample_dataset

    one_class = write_sample_dataset(tmp_path / "one.zip", images_per_class=4, image_size=32, classes=("pizza",))
    with pytest.raises(ValueError, match="only the class \\['pizza'\\]; a classifier needs at least 2"):
        retrain(tiny_config(one_class, tmp_path / "data"))


def test_dashboard_gets_the_report_and_a_finished_training_progress_under_each_datasets_keys(two_runs, on_drive):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    def published(key: str) -> list:
        with get_client(sync_client=True) as client:
            return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    # The first run has no dataset name, the second is "Food on Drive": two histories, one per dataset.
    keys = [LOCAL_KEYS, ArtifactKeys.for_dataset(on_drive.config.dataset_name)]
    assert keys[1].key("report") == "tuneflow-food-on-drive-report"
    for run, own, other in ((two_runs[0], keys[0], keys[1]), (two_runs[1], keys[1], keys[0])):
        # Other tests' flows on this server may add versions under the local keys too, in no particular order.
        bars = published(own.key("training-progress"))
        (bar,) = [a for a in bars if a.description == f"training {run.run_dir.name}"]
        assert bar.type == "progress" and float(bar.data) == 100.0
        heading = f"# Retraining run {run.run_dir.name}\n"
        (report,) = [a for a in published(own.key("report")) if a.data.startswith(heading)]
        assert f"{run.accuracy:.2%}" in report.data and run.promotion_reason in report.data
        assert not [a for a in published(other.key("report")) if a.data.startswith(heading)]


def test_training_logs_reach_the_run_folder_and_history_has_every_epoch(two_runs):
    run_dir = two_runs[0].run_dir
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1] and history["phase"].tolist() == ["head"]
    assert (run_dir / "train.log").is_file()
    # Checkpoints are only for resuming: a finished run gave them back at its prune step.
    assert not (run_dir / "checkpoints").exists()


def test_each_promotion_adds_a_serving_version_and_a_kept_model_none(two_runs):
    """The first run is promoted, so it is served as version 1; the second exports nothing (its export is off)."""
    import tensorflow as tf

    from tuneflow.registry.serving import list_serving_versions, serving_dir, serving_source

    first, second = two_runs
    data_root = first.run_dir.parent.parent
    settings = ServingSettings()  # the first run's defaults: on, as "tuneflow", 3 kept
    served = [first.model_version]  # the second run exports nothing (on_drive: export_on_promotion off)
    assert list_serving_versions(data_root, settings) == list(range(1, len(served) + 1))
    folder = serving_dir(data_root, settings)
    assert [serving_source(folder / str(n))["model_version"] for n in range(1, len(served) + 1)] == served
    assert sorted(p.name for p in (data_root / "serving").iterdir()) == ["tuneflow"]  # nothing staged left over
    newest = tf.saved_model.load(str(folder / str(len(served))))
    assert set(newest.signatures) == {"serving_default", "serving_bytes"}


def test_runs_link_their_photos_from_the_prepared_cache_and_apply_retention(two_runs, on_drive):
    """On by default: each run's dataset is hard links to data_root/cache/prepared/<key>/, and each run ends by
    applying storage.keep_runs (3: two runs keep everything but their checkpoints, which only resuming needs)."""
    data_root = on_drive.config.data_root
    for run in two_runs:
        record = json.loads((run.run_dir / "dataset" / "prepared.json").read_text())
        entry = Path(record["cache_entry"])
        assert entry.parent == data_root / "cache" / "prepared"
        photo = next((run.run_dir / "dataset" / "train").rglob("*.jpg"))
        assert photo.stat().st_nlink == 2 and (entry / "dataset" / photo.relative_to(run.run_dir / "dataset")).samefile(photo)
        assert (run.run_dir / "dataset").is_dir() and not (run.run_dir / "pruned.json").exists()
    run_id = two_runs[1].run_dir.name
    assert any(f"retention (storage.keep_runs=3): freed" in line and f"runs/{run_id}/checkpoints" in line
               for line in on_drive.logs.lines)


def test_the_second_run_decodes_only_the_photos_the_first_did_not_have(two_runs, on_drive):
    """Decoded photos are kept in data_root/cache/decoded/ under the SHA-256 of their bytes: revision 2's run
    decodes its two new photos and reads every other one from what the first run decoded."""
    photos_of = [{hashlib.sha256(path.read_bytes()).hexdigest() for split in ("train", "val")
                  for path in (run.run_dir / "dataset" / split).rglob("*") if path.is_file()} for run in two_runs]
    passes = []  # (photos decoded now, photos decoded by an earlier run), per split and run, in order
    # Each record reaches AllRecords twice (the root and the Prefect logger); train and val lines differ.
    lines = [line for number, line in enumerate(on_drive.logs.lines)
             if number == 0 or line != on_drive.logs.lines[number - 1]]
    for line in lines:
        if match := re.match(r"decoded (?:train|val) photos: all (\d+) cached .*\((\d+) decoded now, (\d+) decoded", line):
            passes.append((int(match[2]), int(match[3])))
        elif match := re.match(r"decoded (?:train|val) photos: all (\d+) were decoded by an earlier run", line):
            passes.append((0, int(match[1])))
    assert len(passes) == 4, on_drive.logs.lines
    first, second = passes[:2], passes[2:]
    assert sum(now for now, _ in first) == len(photos_of[0]) and sum(earlier for _, earlier in first) == 0
    assert sum(now for now, _ in second) == len(photos_of[1] - photos_of[0]) == 2
    assert sum(earlier for _, earlier in second) == len(photos_of[1] & photos_of[0])
    store = two_runs[1].run_dir.parents[1] / "cache" / "decoded"
    assert len(list(store.glob("*/*/*.tensor"))) == len(photos_of[0] | photos_of[1])
    assert not (two_runs[1].run_dir / "cache").exists()  # nothing decoded into the run's own folder


# The Drive key from a Prefect Secret block (this file's Prefect server serves them too).
def test_key_from_a_prefect_secret_block(prefect_server, drive_emulator, test_key: TestKey, tmp_path):
    from prefect.blocks.system import Secret

    from tuneflow.fetch.drive import download_from_drive
    from tuneflow.tasks.fetch import load_drive_key

    Secret(value=service_account_info(test_key, drive_emulator.token_uri)).save("drive-key-for-tests", overwrite=True)
    settings = DriveSettings(key_secret_block="drive-key-for-tests", api_endpoint=drive_emulator.api_endpoint)
    key = load_drive_key(settings)
    assert key.client_email == SERVICE_ACCOUNT_EMAIL and "drive-key-for-tests" in repr(key)

    archive = b"PK" + b"\0" * 1000
    file_id = drive_emulator.add_file("dataset.zip", archive)
    downloaded = download_from_drive(file_id, settings, tmp_path / "cache", load_key=load_drive_key)
    assert downloaded.path.read_bytes() == archive


def test_a_missing_secret_block_says_how_to_create_it(prefect_server):
    from tuneflow.tasks.fetch import load_drive_key
    from tuneflow.fetch.drive import DriveCredentialsError

    with pytest.raises(DriveCredentialsError, match="'no-such-block' could not be loaded"):
        load_drive_key(DriveSettings(key_secret_block="no-such-block"))
