"""The report a person reads: report.html in a real headless Chromium, report.md, and the dashboard artifacts.

The report is built from hand-made run files (real drawn photos, made-up predictions and history) through the
same functions the flow's report task calls, so every section has something in it and the answers are known.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuneflow.evaluation import write_metrics
from tuneflow.checksums import md5_of_file
from tuneflow.archives import FetchedArchive
from tuneflow.dataset.prepare import prepare_dataset
from tuneflow.tasks.report import HTML_LINK_ARTIFACT_KEY, PER_CLASS_ARTIFACT_KEY, SUMMARY_ARTIFACT_KEY, publish_artifacts
from tuneflow.training import list_split
from tests.records import training_record
from tuneflow.config import DataSettings, PromotionSettings, RetrainConfig, TrainingSettings
from tuneflow.metrics import compute_metrics, predictions_table, read_predictions
from tuneflow.comparison import compare_paired
from tuneflow.promotion import Baseline, PromotionDecision, decide_promotion
from tuneflow.records import EvalResult
from tuneflow.report import gather_report, select_mistakes, write_run_report
from tuneflow.sample import SAMPLE_CLASSES, draw_dish, write_sample_dataset

RUN_ID = "20250101-060000-abc123"
IN_USE = "20241201-060000-def456"


def made_up_predictions(dataset_root: Path, classes: list[str], skill: float, seed: int) -> pd.DataFrame:
    """A predictions table for the real validation images: the true class gets `skill` extra logit."""
    paths, labels = list_split(dataset_root, "val", classes)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(paths), len(classes)))
    logits[np.arange(len(paths)), labels] += skill
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = predictions_table([str(Path(p).relative_to(dataset_root)) for p in paths], probabilities, classes)
    table.insert(1, "true_class", [classes[i] for i in labels])
    table.insert(4, "correct", table["true_class"] == table["predicted_class"])
    return table


def two_phase_history() -> pd.DataFrame:
    return pd.DataFrame({
        "epoch": [1, 2, 3, 4, 5],
        "phase": ["head", "head", "head", "fine-tune", "fine-tune"],
        "loss": [1.4, 0.9, 0.7, 0.5, 0.4],
        "accuracy": [0.45, 0.66, 0.74, 0.83, 0.87],
        "val_loss": [1.2, 0.95, 0.8, 0.7, 0.66],
        "val_accuracy": [0.5, 0.62, 0.7, 0.76, 0.78],
    })


def build_run(root: Path, archive_path: Path) -> dict:
    """A run folder holding everything the report step reads, and the report it writes."""
    run_dir = root / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    dataset = prepare_dataset(archive_path, run_dir / "dataset", DataSettings(val_fraction=0.4), seed=3)
    classes = dataset.classes
    config = RetrainConfig(source=str(archive_path), data_root=root, data=DataSettings(val_fraction=0.4),
                           training=TrainingSettings(weights="none", image_size=64, epochs=3, fine_tune_epochs=2))
    archive = FetchedArchive(path=archive_path, source=str(archive_path), md5=md5_of_file(archive_path),
                             size_bytes=archive_path.stat().st_size, drive_file_id="1AbCdEf", drive_revision="0B7rev42")

    predictions = made_up_predictions(dataset.root, classes, skill=2.2, seed=1)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    metrics = compute_metrics(predictions, classes)
    write_metrics(metrics, run_dir / "metrics.json")
    in_use = made_up_predictions(dataset.root, classes, skill=1.2, seed=2)
    in_use.to_csv(run_dir / "current_model_predictions.csv", index=False)
    history_path = run_dir / "history.csv"
    two_phase_history().to_csv(history_path, index=False)

    trained = training_record(model_path=run_dir / "model.keras", classes=classes, history_path=history_path,
                              epochs_run=5, train_images=60, seconds=42.0)
    evaluation = EvalResult(accuracy=metrics.accuracy, num_images=metrics.num_images,
                            predictions_path=run_dir / "predictions.csv", metrics_path=run_dir / "metrics.json")
    paired = compare_paired(predictions, in_use)
    baseline = Baseline(version=IN_USE, classes=classes, accuracy=paired.old_accuracy,
                        predictions_path=run_dir / "current_model_predictions.csv", comparison=paired)
    promoted, reason = decide_promotion(RUN_ID, metrics.accuracy, classes, baseline, PromotionSettings())
    decision = PromotionDecision(promoted=promoted, reason=reason, version=RUN_ID, version_dir=root / "models" / RUN_ID,
                                 accuracy=metrics.accuracy, baseline=baseline, margin=0.0, forced=False)
    content = gather_report(run_dir, config, archive, dataset, trained, evaluation, decision)
    files = write_run_report(content, run_dir)
    return {"content": content, "files": files, "metrics": metrics, "predictions": predictions,
            "decision": decision, "run_dir": run_dir}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return build_run(root, write_sample_dataset(root / "dataset.zip", images_per_class=20, image_size=64))


# Names an archive may carry: markup in a class folder and in file names, and a class in Japanese.
MARKUP_CLASS = "<img src=x onerror=alert(1)>"
JAPANESE_CLASS = "ラーメン"
SCRIPT_FILE = "<script>alert({}).jpg"  # no "</script>": a slash would make it a folder


def write_hostile_dataset(destination: Path, images_per_class: int = 10, image_size: int = 64) -> Path:
    """dataset.zip in the class-folder layout, with sample drawings under names that would be markup if unescaped."""
    folders = {"apple_pie": "apple_pie", "pizza": MARKUP_CLASS, "sashimi": JAPANESE_CLASS}
    with zipfile.ZipFile(destination, "w") as archive:
        for drawing, folder in folders.items():
            rng = random.Random(drawing)
            for i in range(images_per_class):
                name = SCRIPT_FILE.format(i) if folder == JAPANESE_CLASS else f"{i}.jpg"
                buffer = io.BytesIO()
                draw_dish(drawing, rng, image_size).save(buffer, "JPEG")
                archive.writestr(f"{folder}/{name}", buffer.getvalue())
    return destination


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-report")
    return build_run(root, write_hostile_dataset(root / "dataset.zip"))


def test_report_files_are_written(run):
    run_dir = run["run_dir"]
    assert run["files"].html == run_dir / "report.html" and run["files"].markdown == run_dir / "report.md"
    for name in ["training_curves.png", "confusion_matrix.png", "per_class.png", "calibration.png"]:
        assert (run_dir / "figures" / name).read_bytes().startswith(b"\x89PNG"), name


def test_html_is_self_contained(run):
    html = run["files"].html.read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r'(href|src)="(https?:|file:|/)', html), "the report must not load anything from outside"


def test_html_shows_the_numbers_a_reader_checks(run):
    html, metrics, decision = run["files"].html.read_text(), run["metrics"], run["decision"]
    assert f"{metrics.accuracy * 100:.1f}%" in html
    change = decision.accuracy_change
    assert change is not None and f"{change * 100:+.1f} pts" in html
    assert ("Promoted: " if decision.promoted else "Not promoted: ") in html
    paired = decision.comparison  # the table of right and wrong, counted from the two prediction files
    in_use = pd.read_csv(run["run_dir"] / "current_model_predictions.csv")
    assert f'<b id="compared-count">{len(in_use)}</b>' in html
    both_right = int((run["predictions"]["correct"].to_numpy() & in_use["correct"].to_numpy()).sum())
    assert paired.both_right == both_right
    assert (f"<tr><th>new model right</th><td class=\"num\">{both_right}</td>"
            f"<td class=\"num\">{paired.only_new_right}</td></tr>") in html
    for name in SAMPLE_CLASSES:
        assert name in html
    assert "0B7rev42" in html and md5_of_file(Path(run["content"].archive.source)) in html  # provenance
    assert html.count("<figure class=\"thumb\"") == len(select_mistakes(run["predictions"])) + sum(
        len(t) for t in run["content"].typical.values())


def test_what_preparation_recorded_is_shown_and_user_text_is_escaped(run):
    from dataclasses import replace

    from tuneflow.html_report import render_html

    content = run["content"]
    html = render_html(replace(
        content,
        dataset=content.dataset.model_copy(
            update={"layout": "food-101", "skipped": {"too small": 2}, "notes": ["3 duplicate photos dropped"]}
        ),
        archive=content.archive.model_copy(update={"source": "<script>alert(1)</script>"}),
        mistakes=[],
        decision=None,
    ))
    assert "food-101" in html and "too small: 2" in html and "3 duplicate photos dropped" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "No mistakes" in html and 'id="promotion"' not in html


def test_markdown_report_has_the_same_headline_and_decision(run):
    markdown = run["files"].markdown.read_text()
    metrics, decision = run["metrics"], run["decision"]
    assert f"**Validation accuracy: {metrics.accuracy:.2%}**" in markdown
    assert decision.reason in markdown
    assert "![confusion matrix](figures/confusion_matrix.png)" in markdown
    assert "| Drive revision | 0B7rev42 |" in markdown and f"| archive MD5 | {run['content'].archive.md5} |" in markdown
    assert (run["run_dir"] / "figures" / "confusion_matrix.png").is_file()


def test_metrics_json_is_reproduced_from_predictions_csv_alone(run):
    from tuneflow.metrics import Metrics

    saved = Metrics.model_validate_json((run["run_dir"] / "metrics.json").read_text())
    assert compute_metrics(read_predictions(run["run_dir"] / "predictions.csv"), saved.classes) == saved


def read_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    return asyncio.run(read())


@pytest.mark.slow  # starts a Prefect server
def test_dashboard_artifacts_under_stable_keys(run, prefect_server):
    from prefect import flow

    from prefect.runtime import flow_run

    @flow
    def publish():
        publish_artifacts(run["content"], run["files"])
        return flow_run.id

    # Two runs, as two scheduled runs would: each adds a version under the same keys.
    ours = {publish(), publish()}

    def published(key):
        return [a for a in read_artifacts(key) if str(a.flow_run_id) in ours]

    summary, table, link = (published(key) for key in
                            (SUMMARY_ARTIFACT_KEY, PER_CLASS_ARTIFACT_KEY, HTML_LINK_ARTIFACT_KEY))
    assert len(summary) == len(table) == len(link) == 2
    assert f"{run['metrics'].accuracy:.2%}" in summary[0].data and run["decision"].reason in summary[0].data
    rows = table[0].data if isinstance(table[0].data, list) else json.loads(table[0].data)
    assert [row["class"] for row in rows] == run["metrics"].classes
    first = run["metrics"].per_class[rows[0]["class"]]
    assert (rows[0]["support"], rows[0]["f1"]) == (first.support, pytest.approx(first.f1, abs=1e-4))
    assert run["files"].html.resolve().as_uri() in link[0].data


# --- the page in a real browser ---------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic", "--window-size=1400,2000",
]


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail(
            "headless Chromium and chromedriver are needed to test the HTML report: run `make test` (it installs "
            "them) or `apt-get install -y chromium chromium-driver`"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser_path, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


def test_report_opens_in_chromium_with_every_image_loaded(run, browser, tmp_path_factory):
    html_path = run["files"].html
    browser.get(html_path.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    expected = 4 + len(select_mistakes(run["predictions"])) + sum(len(t) for t in run["content"].typical.values())
    assert len(images) == expected
    broken = [alt for alt, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert not broken, f"images that did not load: {broken}"
    headline = browser.find_element("id", "headline-accuracy").text
    assert headline == f"{run['metrics'].accuracy * 100:.1f}%"
    assert browser.title.startswith(f"tuneflow run {RUN_ID}")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, height)
    screenshot = tmp_path_factory.getbasetemp() / "report-screenshot.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    print(f"screenshot: {screenshot}")


# Matplotlib's default font has no Japanese glyphs: the figures show boxes for ラーメン, the page shows the name.
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
def test_names_from_the_archive_show_as_text_never_as_markup(hostile_run, browser):
    html = hostile_run["files"].html.read_text(encoding="utf-8")
    classes = hostile_run["metrics"].classes
    assert MARKUP_CLASS in classes and JAPANESE_CLASS in classes
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(" in html
    assert JAPANESE_CLASS in html  # as is, not as &#...; entities

    browser.get(hostile_run["files"].html.resolve().as_uri())
    assert browser.execute_script("return document.scripts.length") == 0
    sources = browser.execute_script("return Array.from(document.images).map(i => i.getAttribute('src'))")
    assert sources and all(s.startswith("data:image/") for s in sources), "an image element came from a name"
    table_classes = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.metrics tbody tr:not(.total) td:first-child'))"
        ".map(td => td.textContent)"
    )
    assert table_classes == classes
    photos = browser.execute_script("return Array.from(document.querySelectorAll('figure.thumb')).map(f => f.title)")
    assert any(JAPANESE_CLASS in p and "<script>alert(" in p for p in photos), photos
