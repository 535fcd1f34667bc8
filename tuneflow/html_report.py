"""report.html: one self-contained page (figures and thumbnails embedded as data: URIs) that opens anywhere.

`render_html` is a pure function of a ReportContent: what to show is decided by the report task, how it looks
here. Every value that came from a user (class names, paths, sources, reasons) goes through `escape`.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps
from pydantic import BaseModel

from tuneflow.metrics import Metrics
from tuneflow.promotion import PromotionDecision

THUMBNAIL_PX = 128
MISTAKES_SHOWN = 12
TYPICAL_PER_CLASS = 4


@dataclass
class Thumbnail:
    uri: str
    caption: str
    detail: str


@dataclass
class ReportContent:
    """Everything the page shows, already read from the run folder."""

    run_id: str
    metrics: Metrics
    decision: PromotionDecision | None
    current_metrics: Metrics | None
    history: pd.DataFrame
    figures: dict[str, bytes]  # name -> PNG: curves, confusion, per_class, calibration
    mistakes: list[Thumbnail]
    typical: dict[str, list[Thumbnail]]
    dataset: BaseModel
    archive: BaseModel
    training: dict
    config: dict
    generated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_uri(path: Path, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of the image as a data: URI, upright; None when the file cannot be opened."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def points(change: float) -> str:
    """A change in accuracy as signed percentage points: +2.5 pts."""
    return f"{change * 100:+.1f} pts"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _bar_cell(value: float | None, title: str = "") -> str:
    """A number with a small bar in front of it, so a column of scores reads at a glance."""
    if value is None:
        return f'<td class="num muted" title="{escape(title)}">—</td>'
    fill = max(0.0, min(1.0, value)) * 100
    return (f'<td class="num" title="{escape(title)}"><span class="meter"><i style="width:{fill:.1f}%"></i></span>'
            f"{value:.3f}</td>")


# A class taking more predictions than this share, well above its share of images, means the model has
# collapsed onto it: the usual sign of too little training or a learning rate that is too high.
DOMINANT_SHARE = 0.5


def findings(metrics: Metrics) -> list[str]:
    """Plain sentences about failure patterns a reader should not have to spot in the tables."""
    notes = []
    never = [name for name, m in metrics.per_class.items() if m.support and not m.predicted]
    if never:
        notes.append(f"Never predicted: {', '.join(never)} ({len(never)} of {len(metrics.classes)} classes).")
    for name, m in metrics.per_class.items():
        share = m.predicted / metrics.num_images
        if len(metrics.classes) > 2 and share > DOMINANT_SHARE and share > 2 * m.support / metrics.num_images:
            notes.append(f"{name} takes {share:.0%} of all predictions but is {m.support / metrics.num_images:.0%} "
                         "of the images: the model has mostly learned to answer one class.")
    absent = [name for name, m in metrics.per_class.items() if not m.support]
    if absent:
        notes.append(f"No validation image of {', '.join(absent)}: nothing is known about how well it is recognised.")
    return notes


def headline_top_k(metrics: Metrics) -> int | None:
    """The k worth quoting next to accuracy: 3, or 2 for three classes; None when only top-1 means anything."""
    k = min(3, len(metrics.classes) - 1)
    return k if k >= 2 and k in metrics.top_k_accuracy else None


def _card(heading: str, value: str, note: str = "", tone: str = "") -> str:
    return (f'<div class="card {tone}"><div class="label">{heading}</div><div class="value">{value}</div>'
            f'<div class="note">{note}</div></div>')


def render_headline(content: ReportContent) -> str:
    metrics, decision = content.metrics, content.decision
    change = decision.accuracy_change if decision else None
    if decision is None:
        change_card = _card("vs model in use", "—", "no promotion step ran")
    elif decision.baseline is None:
        change_card = _card("vs model in use", "first", "no model was in use yet")
    elif change is None:
        change_card = _card("vs model in use", "n/a", f"{escape(decision.baseline.version)} has other classes")
    else:
        tone = "good" if change > 0 else ("bad" if change < 0 else "")
        change_card = _card("vs model in use", points(change),
                            f"{percent(decision.baseline.accuracy)} for {escape(decision.baseline.version)}, same images",
                            tone)
    k = headline_top_k(metrics)
    cards = [
        _card("validation accuracy", f'<span id="headline-accuracy">{percent(metrics.accuracy)}</span>',
              f"{metrics.num_correct} of {metrics.num_images} images", "primary"),
        change_card,
        _card(f"top-{k} accuracy", percent(metrics.top_k_accuracy[k]), f"true class among the {k} most probable")
        if k else "",
        _card("macro F1", ratio(metrics.macro.f1), f"over {sum(1 for m in metrics.per_class.values() if m.support)} classes"),
        _card("calibration error", percent(metrics.calibration.expected_calibration_error),
              f"mean confidence {percent(metrics.calibration.mean_confidence)}"),
    ]
    notes = "".join(f"<li>{escape(note)}</li>" for note in findings(metrics))
    notes_html = f'<section class="findings"><b>Worth a look</b><ul>{notes}</ul></section>' if notes else ""
    return f'<section class="cards">{"".join(cards)}</section>' + render_decision(decision) + notes_html


def render_decision(decision: PromotionDecision | None) -> str:
    if decision is None:
        return ""
    if decision.promoted:
        title, tone = f"Promoted: {escape(decision.version)} is now the model in use", "promoted"
    else:
        in_use = decision.current_version or "none"
        title, tone = f"Not promoted: {escape(in_use)} stays in use; this model is kept as {escape(decision.version)}", "kept"
    return (f'<section class="decision {tone}" id="promotion"><div class="decision-title">{title}</div>'
            f'<div class="decision-reason">{escape(decision.reason)}</div></section>')


def render_confused(metrics: Metrics) -> str:
    if not metrics.most_confused:
        return '<p class="muted">No validation image was misclassified.</p>'
    rows = "".join(
        f"<tr><td>{escape(p.true_class)}</td><td>{escape(p.predicted_class)}</td><td class=\"num\">{p.count}</td>"
        f"<td class=\"num\">{percent(p.share_of_class)}</td></tr>"
        for p in metrics.most_confused
    )
    return ('<table class="compact"><thead><tr><th>true class</th><th>predicted as</th><th class="num">images</th>'
            f'<th class="num">share of class</th></tr></thead><tbody>{rows}</tbody></table>')


def render_per_class(metrics: Metrics, current: Metrics | None) -> str:
    header = "<th>class</th><th class=\"num\">precision</th><th class=\"num\">recall</th><th class=\"num\">F1</th>"
    header += "<th class=\"num\">support</th><th class=\"num\">predicted</th>"
    if current is not None:
        header += "<th class=\"num\">F1 in use</th>"
    rows = []
    for name in metrics.classes:
        m = metrics.per_class[name]
        cells = [
            f"<td>{escape(name)}</td>",
            _bar_cell(m.precision, "never predicted" if m.precision is None else ""),
            _bar_cell(m.recall, "no validation image" if m.recall is None else ""),
            _bar_cell(m.f1),
            f'<td class="num">{m.support}</td>',
            f'<td class="num">{m.predicted}</td>',
        ]
        if current is not None:
            cells.append(f'<td class="num muted">{ratio(current.per_class[name].f1) if name in current.per_class else "—"}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    for label, averages in (("macro average", metrics.macro), ("weighted average", metrics.weighted)):
        cells = f"<td>{label}</td>{_bar_cell(averages.precision)}{_bar_cell(averages.recall)}{_bar_cell(averages.f1)}"
        cells += f'<td class="num">{metrics.num_images}</td><td></td>' + ("<td></td>" if current is not None else "")
        rows.append(f'<tr class="total">{cells}</tr>')
    top_k = " · ".join(f"top-{k} {percent(v)}" for k, v in metrics.top_k_accuracy.items())
    return (f'<table class="metrics"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="muted small">Top-k accuracy: {top_k}. Precision is undefined (—) for a class never predicted; '
            "recall and F1 for a class without validation images; macro averages leave the latter out.</p>")


def render_thumbnails(thumbnails: list[Thumbnail], empty: str) -> str:
    if not thumbnails:
        return f'<p class="muted">{empty}</p>'
    items = "".join(
        f'<figure class="thumb" title="{escape(t.detail)}"><img src="{t.uri}" alt="{escape(t.caption)}">'
        f"<figcaption>{escape(t.caption)}</figcaption></figure>"
        for t in thumbnails
    )
    return f'<div class="thumbs">{items}</div>'


def render_typical(typical: dict[str, list[Thumbnail]]) -> str:
    rows = "".join(
        f'<div class="class-row"><div class="class-name">{escape(name)}</div>'
        f'{render_thumbnails(thumbs, "no image of this class was classified correctly")}</div>'
        for name, thumbs in typical.items()
    )
    return f'<div class="typical">{rows}</div>'


# Friendlier labels for fields we know; any other field shows its own name.
LABELS = {"path": "local copy", "md5": "archive MD5", "size_bytes": "archive size", "drive_file_id": "Drive file ID",
          "drive_revision": "Drive revision", "root": "folder", "files_seen": "files in archive"}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _size(num_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit} ({num_bytes:,} bytes)"
    return f"{num_bytes:,} bytes"


def _value_html(value) -> str:
    """A field value of a data record: scalars as text, dicts as key: value lists, lists as comma lists."""
    if value is None or value == {} or value == []:
        return '<span class="muted">—</span>'
    if isinstance(value, dict):
        return ", ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in value.items())
    if isinstance(value, list):
        return "<br>".join(escape(str(v)) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def render_record(record: BaseModel, skip: set[str] = frozenset()) -> str:
    """Every field of a pydantic record as a two-column table, labelled with the field's description if any."""
    rows = []
    fields = type(record).model_fields
    for name, value in record.model_dump(mode="json").items():
        if name in skip:
            continue
        description = fields[name].description if name in fields else None
        text = escape(label(name))
        heading = f'<span title="{escape(description)}">{text}</span>' if description else text
        shown = _size(value) if name.endswith("_bytes") and isinstance(value, int) else _value_html(value)
        rows.append(f"<tr><th>{heading}</th><td>{shown}</td></tr>")
    return f'<table class="record">{"".join(rows)}</table>'


def render_counts(dataset: BaseModel, classes: list[str]) -> str:
    counts = pd.DataFrame(getattr(dataset, "counts", {})).reindex(classes).fillna(0).astype(int)
    counts["total"] = counts.sum(axis=1)
    header = "".join(f'<th class="num">{escape(str(c))}</th>' for c in counts.columns)
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td>" + "".join(f'<td class="num">{v:,}</td>' for v in row) + "</tr>"
        for name, row in counts.iterrows()
    )
    totals = "".join(f'<td class="num">{v:,}</td>' for v in counts.sum())
    return (f'<table class="compact"><thead><tr><th>class</th>{header}</tr></thead><tbody>{rows}'
            f'<tr class="total"><td>all</td>{totals}</tr></tbody></table>')


def render_history(history: pd.DataFrame) -> str:
    columns = [c for c in ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy") if c in history]
    header = "".join(f'<th class="{"" if c == "phase" else "num"}">{escape(c.replace("_", " "))}</th>' for c in columns)
    rows = []
    for _, row in history[columns].iterrows():
        cells = []
        for c in columns:
            value = row[c]
            text = escape(str(value)) if c in ("epoch", "phase") else f"{value:.4f}"
            cells.append(f'<td class="{"" if c == "phase" else "num"}">{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="compact"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_settings(training: dict) -> str:
    items = "".join(
        f'<div><dt>{escape(k.replace("_", " "))}</dt><dd>{_value_html(v)}</dd></div>' for k, v in training.items()
    )
    return f'<dl class="settings">{items}</dl>'


def render_calibration_text(metrics: Metrics) -> str:
    c = metrics.calibration
    gap = c.accuracy - c.mean_confidence
    if abs(gap) < 0.05:
        verdict = "Its confidence can be taken roughly at face value."
    elif gap > 0:
        verdict = "It is <b>under-confident</b>: right more often than its probabilities claim."
    else:
        verdict = "It is <b>over-confident</b>: its probabilities promise more than it delivers."
    return (f"<p>On average the model is <b>{percent(c.mean_confidence)}</b> confident and right "
            f"<b>{percent(c.accuracy)}</b> of the time. {verdict}</p>"
            f"<p>Expected calibration error: <b>{percent(c.expected_calibration_error)}</b> (the gap between "
            "confidence and accuracy in each confidence bin, weighted by the bin's share of images; 0 means a "
            "confidence of 0.9 is right 9 times in 10). Bars: accuracy per bin; numbers: images per bin.</p>")


def _figure(content: ReportContent, name: str, alt: str) -> str:
    png = content.figures.get(name)
    return f'<img class="figure" src="{png_uri(png)}" alt="{escape(alt)}">' if png else ""


def render_html(content: ReportContent) -> str:
    """The whole page."""
    metrics = content.metrics
    source = getattr(content.archive, "source", "")
    body = f"""
<header>
  <div class="eyebrow">tuneflow · retraining report</div>
  <h1>Run {escape(content.run_id)}</h1>
  <div class="meta">{len(metrics.classes)} classes · {metrics.num_images} validation images ·
    data {escape(str(source))} · generated {content.generated:%Y-%m-%d %H:%M} UTC</div>
</header>
{render_headline(content)}
<section>
  <h2>Where it goes wrong</h2>
  <div class="two">
    <div>{_figure(content, "confusion", "confusion matrix")}</div>
    <div><h3>Most confused classes</h3>{render_confused(metrics)}</div>
  </div>
  <h3>Most confident mistakes</h3>
  <p class="muted small">Validation images the model got wrong with the highest confidence: true → predicted (confidence).</p>
  {render_thumbnails(content.mistakes, "No mistakes: every validation image was classified correctly.")}
</section>
<section>
  <h2>Per class</h2>
  {_figure(content, "per_class", "precision, recall and F1 per class")}
  {render_per_class(metrics, content.current_metrics)}
</section>
<section>
  <h2>Typical correct predictions</h2>
  <p class="muted small">The correctly classified validation images the model is most sure of, per class.</p>
  {render_typical(content.typical)}
</section>
<section>
  <h2>Calibration</h2>
  <div class="two">
    <div>{_figure(content, "calibration", "reliability diagram")}</div>
    <div>{render_calibration_text(metrics)}</div>
  </div>
</section>
<section>
  <h2>Training</h2>
  {_figure(content, "curves", "training curves")}
  <details><summary>Every epoch</summary>{render_history(content.history)}</details>
</section>
<section>
  <h2>Data</h2>
  <div class="two">
    <div><h3>Images per class and split</h3>{render_counts(content.dataset, metrics.classes)}</div>
    <div><h3>Provenance</h3>{render_record(content.archive)}
      <h3>Preparation</h3>{render_record(content.dataset, skip={"classes", "counts"})}</div>
  </div>
</section>
<section>
  <h2>Settings</h2>
  {render_settings(content.training)}
  <details><summary>The run's whole config</summary><pre>{escape(json.dumps(content.config, indent=2))}</pre></details>
</section>
"""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tuneflow run {escape(content.run_id)}: {percent(metrics.accuracy)}</title>
<style>{CSS}</style>
</head>
<body><main>{body}</main></body>
</html>
"""


CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --soft:#f8fafc; --accent:#2563eb;
        --good:#15803d; --bad:#b91c1c; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; background:#f1f5f9; color:var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header { margin-bottom: 18px; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--accent); font-weight: 600; }
h1 { margin: 2px 0 4px; font-size: 26px; }
h2 { font-size: 19px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 14px 0 8px; }
.meta, .muted { color: var(--muted); }
.small { font-size: 13px; }
section { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px; margin: 16px 0; }
section.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
                background: none; border: none; padding: 0; }
.card { background: white; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.card .value { font-size: 28px; font-weight: 650; font-variant-numeric: tabular-nums; margin: 2px 0; }
.card .note { font-size: 12.5px; color: var(--muted); }
.card.primary { border-top: 4px solid var(--accent); }
.card.good .value { color: var(--good); }
.card.bad .value { color: var(--bad); }
.decision { border-left: 6px solid var(--muted); }
.decision.promoted { border-left-color: var(--good); background: #f0fdf4; }
.decision.kept { border-left-color: var(--warn); background: #fffbeb; }
.findings { border-left: 6px solid var(--bad); background: #fef2f2; padding: 12px 20px; }
.findings ul { margin: 4px 0 0; padding-left: 20px; }
.decision-title { font-weight: 650; font-size: 16px; }
.decision-reason { color: #334155; margin-top: 4px; }
.two { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 24px; align-items: start; }
@media (max-width: 820px) { .two { grid-template-columns: 1fr; } }
img.figure { max-width: 100%; height: auto; display: block; margin: 0 auto 8px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
.num { text-align: right; }
tr.total td { font-weight: 600; background: var(--soft); }
.meter { display: inline-block; width: 56px; height: 6px; margin-right: 10px; vertical-align: middle;
         background: var(--line); border-radius: 3px; overflow: hidden; }
.meter i { display: block; height: 100%; background: var(--accent); border-radius: 3px; }
dl.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 0 24px; margin: 0; }
dl.settings div { display: flex; justify-content: space-between; gap: 12px; padding: 5px 0;
                  border-bottom: 1px solid var(--line); }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; font-variant-numeric: tabular-nums; text-align: right; word-break: break-all; }
table.record th { width: 34%; font-weight: 500; color: var(--muted); }
table.record td { word-break: break-all; }
table.compact { width: auto; min-width: 60%; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
figure.thumb { margin: 0; width: 132px; }
figure.thumb img { width: 128px; height: 128px; object-fit: cover; border-radius: 6px; border: 1px solid var(--line);
                   display: block; background: var(--soft); }
figure.thumb figcaption { font-size: 12px; line-height: 1.3; margin-top: 4px; word-break: break-word; }
.class-row { display: grid; grid-template-columns: 150px 1fr; gap: 12px; align-items: center; padding: 8px 0;
             border-bottom: 1px solid var(--line); }
.class-row:last-child { border-bottom: none; }
.class-name { font-weight: 600; word-break: break-word; }
.wrong { color: var(--bad); }
details { margin-top: 10px; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 12.5px; }
"""
