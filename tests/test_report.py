"""The report a person reads: report.html in a real headless Chromium, report.md, and the dashboard artifacts.

The report is built from hand-made run files (real drawn photos, made-up predictions and history) through the
same functions the flow's report task calls, so every section has something in it and the answers are known.
"""

from __future__ import annotations

import asyncio
import base64
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

from tuneflow.evaluation.evaluate import write_metrics
from tuneflow.checksums import md5_of_file
from tuneflow.fetch.archives import FetchedArchive
from tuneflow.dataset.prepare import prepare_dataset
from tuneflow.report.dashboard import locate_report
from tuneflow.report.text import escape
from tuneflow.tasks.dashboard import ARTIFACT_TYPES, ArtifactKeys
from tuneflow.tasks.report import publish_artifacts
from tuneflow.imaging.pipeline import list_split
from tests.records import FOOD101_CLASSES, made_up_predictions, synthetic_predictions, training_record
from tests.test_deployments import running_stack
from tuneflow.config import DataSettings, PromotionSettings, RetrainConfig, TrainingSettings
from tuneflow.evaluation.metrics import compute_metrics, read_predictions, worst_first
from tuneflow.evaluation.comparison import compare_paired
from tuneflow.registry.promotion import Baseline, PromotionDecision, decide_promotion
from tuneflow.records import EvalResult, PreparedDataset
from tuneflow.report.content import gather_report, select_mistakes, write_run_report
from tuneflow.dataset.sample import SAMPLE_CLASSES, draw_dish, write_sample_dataset

RUN_ID = "20250101-060000-abc123"
IN_USE = "20241201-060000-def456"


def predictions_for_split(dataset_root: Path, classes: list[str], skill: float, seed: int) -> pd.DataFrame:
    """A predictions table for the real validation images: the true class gets `skill` extra logit."""
    paths, labels = list_split(dataset_root, "val", classes)
    return made_up_predictions([str(Path(p).relative_to(dataset_root)) for p in paths], np.asarray(labels), classes,
                               skill, seed)


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
    return report_run(root, archive_path, dataset, predictions_for_split(dataset.root, dataset.classes, 2.2, seed=1),
                      predictions_for_split(dataset.root, dataset.classes, 1.2, seed=2))


def many_class_run(root: Path, classes: list[str] = FOOD101_CLASSES, per_class: int = 20) -> dict:
    """The report of a run at Food-101's 101 classes, from synthetic predictions: no photos (so no thumbnails)."""
    run_dir = root / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    archive_path = root / "dataset.zip"
    zipfile.ZipFile(archive_path, "w").close()
    dataset = PreparedDataset(root=run_dir / "dataset", classes=classes,
                              counts={"train": dict.fromkeys(classes, 4 * per_class), "val": dict.fromkeys(classes, per_class)})
    return report_run(root, archive_path, dataset, synthetic_predictions(classes, per_class, seed=1),
                      synthetic_predictions(classes, per_class, seed=2))


def report_run(root: Path, archive_path: Path, dataset: PreparedDataset, predictions: pd.DataFrame,
               in_use: pd.DataFrame) -> dict:
    """The run's files, given the predictions of its model and of the model in use, and the report written from them."""
    run_dir = root / "runs" / RUN_ID
    classes = dataset.classes
    config = RetrainConfig(source=str(archive_path), data_root=root, data=DataSettings(val_fraction=0.4),
                           training=TrainingSettings(weights="none", image_size=64, epochs=3, fine_tune_epochs=2))
    archive = FetchedArchive(path=archive_path, source=str(archive_path), md5=md5_of_file(archive_path),
                             size_bytes=archive_path.stat().st_size, drive_file_id="1AbCdEf", drive_revision="0B7rev42")

    predictions.to_csv(run_dir / "predictions.csv", index=False)
    metrics = compute_metrics(predictions, classes)
    write_metrics(metrics, run_dir / "metrics.json")
    in_use.to_csv(run_dir / "current_model_predictions.csv", index=False)
    history_path = run_dir / "history.csv"
    two_phase_history().to_csv(history_path, index=False)

    trained = training_record(model_path=run_dir / "model.keras", classes=classes, history_path=history_path,
                              epochs_run=5, train_images=60, seconds=42.0, precision="float32", xla_applied=False,
                              xla_reason="off on CPUs, where XLA trains ResNet50 3.3x slower than without")
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
            "decision": decision, "run_dir": run_dir,
            "records": (run_dir, config, archive, dataset, trained, evaluation)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return build_run(root, write_sample_dataset(root / "dataset.zip", images_per_class=20, image_size=64))


# Names an archive may carry: markup in a class folder and in file names, and a class in Japanese.
MARKUP_CLASS = "<img src=x onerror=alert(1)>"
JAPANESE_CLASS = "ラーメン"
SCRIPT_FILE = "<script>alert({}).jpg"  # no "</script>": a slash would make it a folder


def write_named_dataset(destination: Path, folders: dict[str, str], images_per_class: int = 10, image_size: int = 64,
                        file_name=lambda folder, i: f"{i}.jpg") -> Path:
    """dataset.zip in the class-folder layout: each sample drawing (a key of `folders`) under the folder name given."""
    with zipfile.ZipFile(destination, "w") as archive:
        for drawing, folder in folders.items():
            rng = random.Random(drawing)
            for i in range(images_per_class):
                buffer = io.BytesIO()
                draw_dish(drawing, rng, image_size).save(buffer, "JPEG")
                archive.writestr(f"{folder}/{file_name(folder, i)}", buffer.getvalue())
    return destination


def write_hostile_dataset(destination: Path) -> Path:
    """Sample drawings under names that would be markup if unescaped, and a Japanese class of markup file names."""
    return write_named_dataset(
        destination, {"apple_pie": "apple_pie", "pizza": MARKUP_CLASS, "sashimi": JAPANESE_CLASS},
        file_name=lambda folder, i: SCRIPT_FILE.format(i) if folder == JAPANESE_CLASS else f"{i}.jpg")


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


def test_html_and_markdown_show_one_counts_table(run):
    """Images per class and split, totalled the same way under the same labels in report.html and report.md."""
    dataset = run["content"].dataset
    html, markdown = run["files"].html.read_text(), run["files"].markdown.read_text()
    train, val = sum(dataset.counts["train"].values()), sum(dataset.counts["val"].values())
    totals = ["all classes", f"{train:,}", f"{val:,}", f"{train + val:,}"]
    assert re.search(r'<tr class="total">' + "".join(rf'<td[^>]*>{cell}</td>' for cell in totals), html)
    assert re.search(r"^\| all classes +\| +" + r" +\| +".join(totals[1:]) + r" +\|$", markdown, re.MULTILINE)


def test_html_shows_the_numbers_a_reader_checks(run):
    html, metrics, decision = run["files"].html.read_text(), run["metrics"], run["decision"]
    accuracy = f"{metrics.accuracy:.2%}"  # as report.md, the CLI and the promotion's reason write it
    assert accuracy in html and accuracy in run["files"].markdown.read_text()
    change = decision.accuracy_change
    assert change is not None and f"{change * 100:+.1f} points" in html
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

    from tuneflow.report.html import render_html

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
    assert 'id="promotion"' not in html
    # The run had mistakes whose photos are gone: the page says so, never "no mistakes".
    wrong = content.metrics.num_images - content.metrics.num_correct
    assert wrong > 0 and "No mistakes" not in html
    assert f"{wrong:,} of {content.metrics.num_images:,} validation images were misclassified" in html
    perfect = content.metrics.model_copy(update={"num_correct": content.metrics.num_images})
    assert "No mistakes: every validation image" in render_html(replace(content, mistakes=[], metrics=perfect))


def test_every_report_says_which_precision_and_xla_training_applied_beside_what_was_requested(run):
    from tuneflow.report.dashboard import render_dashboard_report

    applied = ("precision float32 (requested auto); XLA not applied (requested auto: off on CPUs, where XLA trains "
               "ResNet50 3.3x slower than without)")
    artifact = render_dashboard_report(run["content"], locate_report(run["files"].html, RUN_ID, None, "w")).markdown
    for name, text in (("report.html", run["files"].html.read_text()), ("report.md", run["files"].markdown.read_text()),
                       ("retrain-report artifact", artifact)):
        assert applied in text, name


def test_markdown_report_has_the_same_headline_and_decision(run):
    markdown = run["files"].markdown.read_text()
    metrics, decision = run["metrics"], run["decision"]
    assert f"**Validation accuracy: {metrics.accuracy:.2%}**" in markdown
    assert escape(decision.reason) in markdown
    assert "![confusion matrix](figures/confusion_matrix.png)" in markdown
    assert "| Drive revision | 0B7rev42 |" in markdown and f"| archive MD5 | {run['content'].archive.md5} |" in markdown
    assert (run["run_dir"] / "figures" / "confusion_matrix.png").is_file()


def test_metrics_json_is_reproduced_from_predictions_csv_alone(run):
    from tuneflow.evaluation.metrics import Metrics

    saved = Metrics.model_validate_json((run["run_dir"] / "metrics.json").read_text())
    assert compute_metrics(read_predictions(run["run_dir"] / "predictions.csv"), saved.classes) == saved


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory):
    """A real `prefect server start` (with its dashboard: the test harness's server serves none) that this
    module's flows report to."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with running_stack(tmp_path_factory.mktemp("dashboard-server")) as stack:
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            yield stack


def read_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    return asyncio.run(read())


@pytest.mark.slow  # starts a Prefect server
def test_dashboard_artifacts_under_keys_of_their_dataset_each_of_one_type(run, dashboard_server):
    from prefect import flow

    from prefect.runtime import flow_run

    html = run["files"].html
    served = locate_report(html, RUN_ID, "https://files.example/tuneflow/runs/folders/", "gpu-worker-1")
    on_worker = locate_report(html, RUN_ID, None, "gpu-worker-1")
    food, flowers = ArtifactKeys.for_dataset("Food"), ArtifactKeys.for_dataset("flowers")

    @flow
    def publish(location, keys):
        publish_artifacts(run["content"], location, keys)
        return flow_run.id

    # Two runs of one dataset, as two scheduled runs would: each adds a version under the same keys. The first
    # one's run folders are served over HTTP (storage.report_base_url), the second's are only on the worker's
    # disk. A third run is another deployment's, of another dataset.
    first, second, other = publish(served, food), publish(on_worker, food), publish(served, flowers)
    ours = {first, second}

    def published(key):
        return [a for a in read_artifacts(key) if str(a.flow_run_id) in ours]

    summary, table, link = (published(food.key(what)) for what in ("report", "per-class-metrics", "report-html"))
    assert len(summary) == len(table) == len(link) == 2
    assert f"{run['metrics'].accuracy:.2%}" in summary[0].data and escape(run["decision"].reason) in summary[0].data
    rows = table[0].data if isinstance(table[0].data, list) else json.loads(table[0].data)
    assert [row["class"] for row in rows] == worst_first(run["metrics"])
    top = run["metrics"].per_class[rows[0]["class"]]
    assert (rows[0]["support"], rows[0]["f1"]) == (top.support, pytest.approx(top.f1, abs=1e-4))
    by_run = {str(a.flow_run_id): a for a in link}
    url = f"https://files.example/tuneflow/runs/folders/{RUN_ID}/report.html"
    assert f"[Open report.html]({url})" in by_run[str(first)].data
    where = by_run[str(second)]
    # Without a URL: where the file is and how to copy it, and no link that would open only on the worker.
    assert "file://" not in where.data and "](" not in where.data
    assert f"`{html.resolve()}`" in where.data and f"scp gpu-worker-1:{html.resolve()} ." in where.data
    # One type per key, whatever the run: the dashboard shows each key's history as one series.
    for what, kind in ARTIFACT_TYPES.items():
        assert {a.type for a in published(food.key(what))} <= {kind}, what
    # The other dataset's run wrote into its own keys only.
    assert [str(a.flow_run_id) for a in read_artifacts(flowers.key("report"))] == [str(other)]
    assert str(other) not in {str(a.flow_run_id) for a in read_artifacts(food.key("report"))}


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
    assert headline == f"{run['metrics'].accuracy:.2%}"
    assert browser.title.startswith(f"tuneflow run {RUN_ID}")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, height)
    screenshot = tmp_path_factory.getbasetemp() / "report-screenshot.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    print(f"screenshot: {screenshot}")


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
    assert table_classes == worst_first(hostile_run["metrics"])
    photos = browser.execute_script("return Array.from(document.querySelectorAll('figure.thumb')).map(f => f.title)")
    assert any(JAPANESE_CLASS in p and "<script>alert(" in p for p in photos), photos


# --- the dashboard: figures inline, names as text, — where undefined, accuracy across retrainings -------------

def with_undefined_values(run):
    """The run's report where the first class is never predicted (precision undefined) and the last has no
    validation image (recall and F1 undefined), for the new model and the model in use alike."""
    from dataclasses import replace

    classes = run["metrics"].classes
    never, absent = classes[0], classes[-1]

    def blank(table: pd.DataFrame) -> pd.DataFrame:
        table = table[table["true_class"] != absent].copy()
        table.loc[table["predicted_class"] == never, "predicted_class"] = classes[1]
        return table

    return replace(run["content"], metrics=compute_metrics(blank(run["predictions"]), classes),
                   current_metrics=compute_metrics(blank(read_predictions(run["run_dir"] / "current_model_predictions.csv")), classes))


def test_undefined_values_show_as_a_dash_never_as_nan(run):
    from tuneflow.report.dashboard import render_dashboard_report
    from tuneflow.report.markdown import per_class_rows, render_markdown

    content = with_undefined_values(run)
    never, absent = content.metrics.classes[0], content.metrics.classes[-1]
    assert content.metrics.per_class[never].precision is None and content.metrics.per_class[absent].f1 is None
    location = locate_report(run["files"].html, RUN_ID, None, "worker")
    for name, markdown in (("report.md", render_markdown(content, {})),
                           ("retrain-report artifact", render_dashboard_report(content, location).markdown)):
        assert not re.search(r"\bnan\b", markdown, re.IGNORECASE), f"{name} shows nan"
        rows = table_rows(markdown.split("## Per class", 1)[1].split("\n## ", 1)[0])
        assert rows[escape(never)][1] == "—", f"{name}: precision of a class never predicted"
        assert rows[escape(absent)][2:4] == ["—", "—"], f"{name}: recall and F1 of a class without images"
        assert rows[escape(absent)][6] == "—", f"{name}: F1 of the model in use for a class without images"
    table = {row["class"]: row for row in per_class_rows(content.metrics, content.current_metrics)}
    assert table[never]["precision"] == "—" and table[absent]["f1"] == table[absent]["f1_model_in_use"] == "—"
    assert isinstance(table[never]["recall"], float)


# Names an archive may carry, each of which would be markup somewhere if written into markdown as it is.
HOSTILE_NAMES = [
    MARKUP_CLASS, JAPANESE_CLASS, SCRIPT_FILE.format(1), "<!-- comment", "a | b", "*bold* _it_ **x**", "`code`",
    "[link](http://x.example)", "![img](x.png)", "http://x.example/a_b", "www.x.example", "who@x.example", "~~del~~",
    "# heading", "1. list", "- item", "---", "&amp; &lt;", "back\\slash", "line\nbreak", "_leading", "snake_case_",
    "apple_pie",
]


def render_like_the_dashboard(markdown: str) -> str:
    """Markdown to HTML close to the Prefect UI's renderer (marked): CommonMark, GFM tables and strikethrough, raw
    HTML passed through as the UI lets it through. (GFM's bare-URL autolinks are not rendered here: that needs
    linkify-it-py; escape's rules for them follow the GFM spec.)"""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def rendered_text_and_tags(html: str) -> tuple[str, list[str]]:
    from html.parser import HTMLParser

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.text, self.tags = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

        def handle_data(self, data):
            self.text.append(data)

    parser = Collect()
    parser.feed(html)
    return "".join(parser.text).strip(), parser.tags


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_an_escaped_name_renders_as_exactly_its_characters(name):
    from tuneflow.report.text import table

    shown = name.replace("\n", " ")
    for context, markdown, tags in (("a sentence", f"Class {escape(name)} here.", ["p"]),
                                    ("a list item", f"- {escape(name)} → pizza", ["ul", "li"])):
        text, found = rendered_text_and_tags(render_like_the_dashboard(markdown))
        assert found == tags, f"{name!r} in {context} made elements: {found}"
        assert shown in text, f"{name!r} in {context} shows as {text!r}"
    text, found = rendered_text_and_tags(render_like_the_dashboard(table(["class", "n"], [[name, 1]])))
    assert found.count("td") == 2 and set(found) == {"table", "thead", "tr", "th", "tbody", "td"}, found
    assert shown in text


def data_uris(markdown: str) -> list[str]:
    return re.findall(r"\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)", markdown)


def test_report_artifact_embeds_small_palette_figures_and_the_mistakes(run):
    from PIL import Image

    from tuneflow.report.dashboard import ARTIFACT_BUDGET_BYTES, FIGURE_WIDTH_PX, render_dashboard_report

    report = render_dashboard_report(run["content"], locate_report(run["files"].html, RUN_ID, None, "worker"))
    uris = data_uris(report.markdown)
    mistakes = len(run["content"].mistakes)
    assert mistakes and len(uris) == 3 + mistakes  # per class, confusion, training curves (no history yet)
    for uri in uris:
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        image.load()
        assert image.format == "PNG" and image.mode == "P" and 0 < image.width <= FIGURE_WIDTH_PX
    assert report.size_bytes == len(report.markdown.encode()) < ARTIFACT_BUDGET_BYTES and not report.left_out
    print(f"retrain-report artifact: {report.size_bytes:,} bytes, {len(uris)} images")
    captions = [f"{row.true_class} → {row.predicted_class} ({row.confidence:.0%})"
                for row in select_mistakes(run["predictions"]).itertuples()]
    assert all(escape(caption) in report.markdown for caption in captions)


def test_an_artifact_over_its_budget_leaves_out_the_thumbnails_first_and_says_so(run):
    from tuneflow.report.dashboard import render_dashboard_report

    location = locate_report(run["files"].html, RUN_ID, None, "worker")
    full = render_dashboard_report(run["content"], location)
    smaller = render_dashboard_report(run["content"], location, budget_bytes=full.size_bytes - 1)
    assert smaller.left_out == ["the mistakes' thumbnails"] and smaller.size_bytes < full.size_bytes
    assert len(data_uris(smaller.markdown)) == 3 and "Left out to keep this artifact under" in smaller.markdown
    bare = render_dashboard_report(run["content"], location, budget_bytes=1)
    assert not data_uris(bare.markdown) and "report.html has everything" in bare.markdown


def test_report_artifact_in_chromium_decodes_every_image_and_shows_names_as_text(hostile_run, browser, tmp_path):
    """The artifact's markdown rendered as the dashboard does, in a real headless Chromium."""
    from tuneflow.report.dashboard import render_dashboard_report

    report = render_dashboard_report(hostile_run["content"], locate_report(hostile_run["files"].html, RUN_ID, None,
                                                                           "worker"))
    page = tmp_path / "artifact.html"
    page.write_text(f"<!doctype html><meta charset=utf-8><body>{render_like_the_dashboard(report.markdown)}</body>",
                    encoding="utf-8")
    browser.get(page.as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 22), i.alt, i.complete,"
        " i.naturalWidth])")
    assert len(images) == 3 + len(hostile_run["content"].mistakes)
    assert all(src == "data:image/png;base64," and complete and width > 0 for src, _, complete, width in images), images
    assert browser.execute_script("return document.querySelectorAll('[onerror], script').length") == 0
    text = browser.execute_script("return document.body.innerText")
    assert MARKUP_CLASS in text and JAPANESE_CLASS in text


# --- accuracy across retrainings -----------------------------------------------------------------------------

def store_stand_in_version(data_root: Path, version: str, details: dict, promoted: bool | None) -> None:
    """A model version as the promote step stores it, with a stand-in model file (the history never opens it)."""
    from tuneflow.registry.versions import point_current_at, store_version

    model_dir = data_root.parent / "stand-in-model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "model.keras").write_bytes(b"stand-in")
    (model_dir / "classes.json").write_text(json.dumps(["apple_pie", "pizza"]))
    record = {"run_dir": str(data_root / "runs" / version), **details}  # a run folder that no longer exists
    if promoted is not None:
        record["promoted"] = promoted
    store_version(model_dir, data_root, version, record)
    if promoted:
        point_current_at(data_root, version)


def version_details(accuracy: float, revision: str) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.05, "training_photos": 24, "validation_photos": 6,
            "archive": {"md5": "0" * 32, "drive_revision": revision}}


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The rows of the one markdown table in `markdown`, by their first cell."""
    lines = [line[2:-2] for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0]: cells for cells in ([c.strip() for c in line.split(" | ")] for line in lines[2:])}


def history_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The history table of a retrain-history artifact: version -> column -> cell."""
    from tuneflow.report.history import HISTORY_COLUMNS

    return {version: dict(zip(HISTORY_COLUMNS, cells)) for version, cells in table_rows(markdown).items()}


def test_history_is_read_from_the_registry_and_old_versions_show_dashes(tmp_path):
    from tuneflow.report.history import history_chart, read_history, render_history_markdown

    data_root = tmp_path / "data"
    store_stand_in_version(data_root, "20261101-030000-aaaaaa", {"accuracy": 0.6, "training_photos": 24}, None)
    store_stand_in_version(data_root, "20261108-030000-bbbbbb", version_details(0.7, "rev2"), True)
    rows = read_history(data_root)
    markdown = render_history_markdown(rows, None)
    table = history_rows(markdown)
    old, new = table["20261101-030000-aaaaaa"], table["20261108-030000-bbbbbb"]
    recent = ["promoted", "accuracy", "macro F1", "data revision", "photos"]
    assert [old[c] for c in recent] == ["—", "60.00%", "—", "—", "24 trained on"]  # stored before these were kept
    assert [new[c] for c in recent] == ["yes, in use", "70.00%", "0.650", "Drive rev2", "30 (24 + 6)"]
    assert list(table) == ["20261108-030000-bbbbbb", "20261101-030000-aaaaaa"]  # newest first
    assert history_chart(rows).startswith(b"\x89PNG") and history_chart([]) is None


@pytest.mark.slow  # starts a Prefect server
def test_history_artifact_across_three_runs_read_back_through_the_api(dashboard_server, tmp_path):
    from PIL import Image
    from prefect import flow
    from prefect.runtime import flow_run

    from tuneflow.report.history import history_chart, read_history
    from tuneflow.tasks.report import publish_history

    data_root = tmp_path / "data"

    @flow
    def retraining(version: str, accuracy: float, promoted: bool):
        """What each retraining run adds to the registry, then the history it publishes."""
        store_stand_in_version(data_root, version, version_details(accuracy, f"rev-{version[-1]}"), promoted)
        versions = read_history(data_root)
        publish_history(versions, history_chart(versions), ArtifactKeys.for_dataset("history-test"))
        return flow_run.id

    runs = [retraining("20261101-030000-aaaaa1", 0.70, True), retraining("20261108-030000-aaaaa2", 0.65, False),
            retraining("20261115-030000-aaaaa3", 0.80, True)]
    published = {str(a.flow_run_id): a for a in read_artifacts(ArtifactKeys.for_dataset("history-test").key("history"))}
    first, second, third = (published[str(run)] for run in runs)
    assert len(history_rows(first.data)) == 1 and len(history_rows(second.data)) == 2
    table = history_rows(third.data)
    assert list(table) == ["20261115-030000-aaaaa3", "20261108-030000-aaaaa2", "20261101-030000-aaaaa1"]
    assert [[row["promoted"], row["accuracy"], row["macro F1"]] for row in table.values()] == [
        ["yes, in use", "80.00%", "0.750"], ["no", "65.00%", "0.600"], ["yes", "70.00%", "0.650"]]
    assert [table["20261108-030000-aaaaa2"][c] for c in ("data revision", "photos")] == ["Drive rev-2", "30 (24 + 6)"]
    (chart,) = data_uris(third.data)
    image = Image.open(io.BytesIO(base64.b64decode(chart.split(",", 1)[1])))
    assert image.format == "PNG" and image.width > 0
    # The second run's history said the first version was still in use: it was not replaced.
    assert history_rows(second.data)["20261101-030000-aaaaa1"]["promoted"] == "yes, in use"


@pytest.mark.slow  # starts a Prefect server
def test_report_artifact_in_the_prefect_ui_decodes_every_image_and_shows_names_as_text(hostile_run,
                                                                                       dashboard_server, browser):
    """The retrain-report artifact of a run whose class and file names are markup, opened in the real dashboard.
    Written as it was before escaping, the UI made <img src="x"> elements of those names."""
    from prefect import flow
    from prefect.runtime import flow_run
    from selenium.webdriver.support.ui import WebDriverWait

    content = hostile_run["content"]

    @flow
    def publish():
        publish_artifacts(content, locate_report(hostile_run["files"].html, RUN_ID, None, "gpu-worker-1"), keys)
        return flow_run.id

    keys = ArtifactKeys.for_dataset("hostile")
    run_id = str(publish())
    (report,) = [a for a in read_artifacts(keys.key("report")) if str(a.flow_run_id) == run_id]
    browser.get(f"{dashboard_server.url}/artifacts/artifact/{report.id}")
    expected = 3 + len(content.mistakes)  # per class, confusion, training curves, one per mistake

    def rendered(driver):  # the UI fetches the artifact, then renders its markdown, then the images decode
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('main img, body img'))"
            ".filter(i => (i.getAttribute('src') || '').startsWith('data:image/png'))"
            ".map(i => [i.complete, i.naturalWidth])")
        return len(images) >= expected and all(complete for complete, _ in images) and images

    images = WebDriverWait(browser, 120).until(rendered)
    assert len(images) == expected and all(width > 0 for _, width in images), images
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    text = browser.execute_script("return document.body.innerText")
    assert f"{MARKUP_CLASS} → " in text and f"→ {MARKUP_CLASS}" in text  # as text, in the confused pairs
    assert JAPANESE_CLASS in text and "<script>alert(" in text  # a Japanese class, a file name with markup


def test_report_html_shows_the_accuracy_across_retrainings(run, tmp_path):
    from dataclasses import replace

    from tuneflow.report.history import history_chart, read_history
    from tuneflow.report.html import render_html

    data_root = tmp_path / "data"
    store_stand_in_version(data_root, "20261101-030000-aaaaa1", version_details(0.70, "rev-1"), True)
    store_stand_in_version(data_root, "20261108-030000-aaaaa2", version_details(0.65, "rev-2"), False)
    versions = read_history(data_root)
    html = render_html(replace(run["content"], versions=versions,
                               figures={**run["content"].figures, "history": history_chart(versions)}))
    section = html.split('<section id="history">', 1)[1].split("</section>", 1)[0]
    assert '<img class="figure" src="data:image/png;base64,' in section and "(2)" in section
    assert '<section id="history">' not in render_html(run["content"])  # no version stored: no chart


def test_a_model_in_use_that_trained_on_every_validation_photo_leaves_the_report_whole(run, tmp_path):
    """A new upload split otherwise (another seed): the model in use trained on all of this run's validation photos,
    so it is scored on none and current_model_predictions.csv has no rows. The report says so and is written."""
    from tuneflow.report.dashboard import render_dashboard_report

    run_dir, config, archive, dataset, trained, evaluation = run["records"]
    classes = run["metrics"].classes
    none_scored = pd.DataFrame(columns=["path", "true_class", "predicted_class", "confidence", "correct"])
    none_scored.to_csv(tmp_path / "current_model_predictions.csv", index=False)
    paired = compare_paired(run["predictions"], none_scored, left_out=len(run["predictions"]),
                            left_out_reason=f"{IN_USE} trained on them")
    baseline = Baseline(version=IN_USE, classes=classes, accuracy=None,
                        predictions_path=tmp_path / "current_model_predictions.csv", comparison=paired)
    promoted, reason = decide_promotion(RUN_ID, run["metrics"].accuracy, classes, baseline, PromotionSettings())
    decision = PromotionDecision(promoted=promoted, reason=reason, version=RUN_ID, version_dir=tmp_path / RUN_ID,
                                 accuracy=run["metrics"].accuracy, baseline=baseline, margin=0.0, forced=False)
    content = gather_report(run_dir, config, archive, dataset, trained, evaluation, decision)
    assert not promoted and content.current_metrics is None
    markdown = render_dashboard_report(content, locate_report(run_dir / "report.html", RUN_ID, None, "w")).markdown
    assert f"not compared: {IN_USE} trained on every one of these validation photos" in markdown
