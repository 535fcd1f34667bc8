"""The report's figures as people read them: class names in any script, and 5 classes as well as 101.

Figures are drawn from hand-made run files (tests/test_report.py's build_run) or from a synthetic predictions
table (tests/records.py), never from a trained model.
"""

from __future__ import annotations

import io
import logging
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from tests.records import FOOD101_CLASSES, synthetic_predictions
from tests.test_report import (RUN_ID, build_run, many_class_run, table_rows, two_phase_history,
                               write_named_dataset)
from tuneflow.dataset.sample import SAMPLE_CLASSES
from tuneflow.evaluation.metrics import compute_metrics, worst_first
from tuneflow.report.content import FIGURE_FILES, draw_figures
from tuneflow.report.dashboard import ARTIFACT_PANE_PX, compact_png, locate_report, render_dashboard_report
from tuneflow.report.history import VersionRow
from tuneflow.report.markdown import per_class_rows
from tuneflow.report.plots import DPI, png

# Real dish names as class folders: Japanese, Chinese (simplified and traditional), Korean; and a name with an
# emoji, which no font of the figures draws.
EMOJI_CLASS = "寿司 🍣"
CJK_FOLDERS = {"apple_pie": "ラーメン", "french_toast": EMOJI_CLASS, "hot_dog": "北京烤鸭", "pizza": "牛肉麵",
               "sashimi": "비빔밥"}
SMALLEST_LABEL_PX = 9
WIDEST_RATIO = 3


def versions(count: int) -> list[VersionRow]:
    """Model versions a week apart, every other one promoted, the last one in use."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [VersionRow(version=f"2026{i:04d}-030000-aaaaaa", stored_at=start + timedelta(weeks=i),
                       data_revision="Drive 0B7", training_photos=24, validation_photos=6, accuracy=0.6 + i / 100,
                       macro_f1=0.55 + i / 100, promoted=i % 2 == 0, in_use=i == count - 1) for i in range(count)]


def tick_labels(axis) -> list[str]:
    return [label.get_text() for label in axis.get_yticklabels()]


def test_every_figure_draws_japanese_chinese_and_korean_names(tmp_path, caplog):
    """Matplotlib's default font has none of these glyphs: it warns `Glyph ... missing from font(s) DejaVu Sans`
    and draws boxes. With the figures' fonts every figure (the history chart too) draws every character, and the
    class whose name has an emoji is called by its number in the figures and by its name in the reports."""
    caplog.set_level(logging.WARNING, logger="matplotlib")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = build_run(tmp_path, write_named_dataset(tmp_path / "dataset.zip", CJK_FOLDERS))
        content = run["content"]
        figures = draw_figures(content.history, content.metrics, content.current_metrics, versions(3))
        for figure in figures.values():
            png(figure)
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing
    assert not [r.getMessage() for r in caplog.records if "findfont" in r.getMessage()]
    assert set(figures) == set(FIGURE_FILES) and set(content.figures) == set(FIGURE_FILES) - {"history"}

    classes = content.metrics.classes
    number = f"#{classes.index(EMOJI_CLASS)}"
    shown = {name if name != EMOJI_CLASS else number for name in classes}
    assert set(tick_labels(figures["per_class"].axes[0])) == shown
    assert set(tick_labels(figures["confusion"].axes[0])) == shown
    legend_row = f"| {number} | {EMOJI_CLASS} |"
    artifact = render_dashboard_report(content, locate_report(run["files"].html, RUN_ID, None, "worker")).markdown
    assert legend_row in artifact and legend_row in run["files"].markdown.read_text()
    html = run["files"].html.read_text()
    assert f"<tr><td>{number}</td><td>{EMOJI_CLASS}</td></tr>" in html.split('id="numbered-classes"', 1)[1]
    assert all(name in html and name in artifact for name in classes)


@pytest.fixture(scope="module", params=[5, 101], ids=["5 classes", "101 classes"])
def report_figures(request):
    classes = list(SAMPLE_CLASSES) if request.param == 5 else FOOD101_CLASSES
    assert len(classes) == request.param
    metrics = compute_metrics(synthetic_predictions(classes, per_class=20, seed=1), classes)
    current = compute_metrics(synthetic_predictions(classes, per_class=20, seed=2), classes)
    return metrics, current, draw_figures(two_phase_history(), metrics, current, versions(12))


def test_every_figure_reads_in_the_artifact_pane(report_figures):
    """As the dashboard shows it (scaled to the pane of a 1280 px wide window): no figure is a strip (width at most
    3 times the height; at 101 classes the per-class bars were 93 x 3.4 inches) and no text is under 9 px."""
    _, _, figures = report_figures
    assert set(figures) == set(FIGURE_FILES)
    for name, figure in figures.items():
        drawn = png(figure)
        with Image.open(io.BytesIO(drawn)) as image:
            width, height = image.size
        assert width / height <= WIDEST_RATIO, f"{name} is {width} x {height} px"
        with Image.open(io.BytesIO(compact_png(drawn))) as image:
            scale = min(ARTIFACT_PANE_PX, image.width) / width
        sizes = {text.get_text(): text.get_fontsize() * DPI / 72 * scale for text in figure.findobj(Text)
                 if text.get_visible() and text.get_text().strip()}
        small = {text: round(px, 1) for text, px in sizes.items() if px < SMALLEST_LABEL_PX}
        assert not small, f"{name}: text under {SMALLEST_LABEL_PX} px in a {ARTIFACT_PANE_PX} px pane: {small}"


def test_per_class_bars_put_the_worst_classes_first_and_at_101_show_the_worst_15_and_best_5(report_figures):
    metrics, current, figures = report_figures
    axis = figures["per_class"].axes[0]
    ranked = worst_first(metrics)
    expected = ranked if len(ranked) <= 30 else [*ranked[:15], *ranked[-5:]]
    assert tick_labels(axis) == expected
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["precision", "recall", "F1", "F1 of model in use"]
    bars = {container.get_label(): container for container in axis.containers}
    shown = expected
    assert [bar.get_width() for bar in bars["F1"]] == pytest.approx([metrics.per_class[n].f1 for n in shown])
    assert [bar.get_width() for bar in bars["F1 of model in use"]] == pytest.approx(
        [current.per_class[n].f1 for n in shown])


def test_the_confusion_matrix_names_the_most_confused_classes(report_figures):
    """Up to 20 classes the whole matrix with every name; at 101 the block of the 20 most confused classes, named,
    beside the whole matrix in small."""
    metrics, _, figures = report_figures
    axes = figures["confusion"].axes
    if len(metrics.classes) <= 20:
        assert tick_labels(axes[0]) == metrics.classes
        return
    block = tick_labels(axes[0])
    assert len(block) == len(set(block)) == 20 and axes[0].get_title() == "the 20 most confused classes"
    top = metrics.most_confused[0]
    assert {top.true_class, top.predicted_class} <= set(block)
    whole = axes[1].images[0].get_array()
    assert whole.shape == (101, 101) and axes[1].get_title() == "all 101 classes"
    counts = np.array(metrics.confusion)
    block_index = [metrics.classes.index(name) for name in block]
    inside = counts[np.ix_(block_index, block_index)].sum() - np.trace(counts[np.ix_(block_index, block_index)])
    others = sorted(set(range(101)) - set(block_index))
    assert inside > counts[np.ix_(others[:20], others[:20])].sum() - np.trace(counts[np.ix_(others[:20], others[:20])])


def test_the_per_class_tables_list_the_worst_f1_first(tmp_path):
    """At 101 classes: the table artifact and report.html have every class, worst F1 first; the report artifact
    has the classes of the bars above it, and says where the others are."""
    run = many_class_run(tmp_path)
    ranked = worst_first(run["metrics"])
    rows = per_class_rows(run["metrics"], run["content"].current_metrics)
    assert [row["class"] for row in rows] == ranked and len(rows) == 101
    scores = [row["f1"] for row in rows if row["f1"] != "—"]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    html = run["files"].html.read_text().split('<table class="metrics">', 1)[1].split("</table>", 1)[0]
    assert [html.index(f"<tr><td>{name}</td>") for name in ranked] == sorted(html.index(f"<tr><td>{name}</td>")
                                                                            for name in ranked)
    artifact = render_dashboard_report(run["content"], locate_report(run["files"].html, RUN_ID, None, "w")).markdown
    table = table_rows(artifact.split("## Per class", 1)[1].split("\n## ", 1)[0])
    assert list(table) == [*ranked[:15], "… 81 more classes", *ranked[-5:]]
    assert "the `retrain-per-class-metrics` artifact and report.html list all 101" in artifact
