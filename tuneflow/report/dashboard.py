"""The report as the Prefect dashboard shows it: the figures and the most confident mistakes embedded as small
palette PNGs (data: URIs, which the UI renders in markdown artifacts), and where report.html is.

A markdown artifact is a row in Prefect's database, so the artifact is kept under ARTIFACT_BUDGET_BYTES:
figures are downscaled to the artifact pane's width and reduced to a palette; if it is still too big, the
thumbnails go first, then the figures shrink, and the artifact says what it left out.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydantic import BaseModel

from tuneflow.evaluation.metrics import Metrics
from tuneflow.formatting import byte_size
from tuneflow.report.html import ReportContent, Thumbnail, no_thumbnails_text, png_uri
from tuneflow.report.text import code, escape
from tuneflow.report.markdown import render_summary_markdown

# The figures the dashboard shows, in this order in the artifact: named as in ReportContent.figures.
DASHBOARD_FIGURES = ("per_class", "confusion", "curves", "history")
# The artifact pane's width in the Prefect UI (3.x), measured in Chromium: 716 px in a 1280 px wide window, 802 in
# 1366, 876 in 1440, 1356 in 1920. Figures are laid out to read at the narrowest of these (tuneflow.report.plots).
ARTIFACT_PANE_PX = 716
# Figures are kept up to this wide, for wider screens; the browser scales them down to the pane.
FIGURE_WIDTH_PX = 900
# The pane scrolls: a tall figure (per-class bars of 30 classes) keeps its height, so its labels keep their size.
FIGURE_HEIGHT_PX = 1800
# Charts are flat colours and anti-aliased edges: 64 colours look the same, at a third of the bytes.
FIGURE_COLOURS = 64
THUMBNAIL_PX = 80
THUMBNAIL_COLOURS = 128
# Four thumbnails and their captions fit the artifact pane; a fifth column is cut off on a laptop screen.
MISTAKES_PER_ROW = 4
ARTIFACT_BUDGET_BYTES = 1_000_000


def compact_png(png: bytes, width: int = FIGURE_WIDTH_PX, height: int = FIGURE_HEIGHT_PX,
                colours: int = FIGURE_COLOURS, dither: bool = False) -> bytes:
    """An image as a palette PNG no larger than width x height (aspect kept)."""
    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    image.thumbnail((width, height), Image.Resampling.LANCZOS)
    palette = image.quantize(colors=colours, dither=Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail_png(thumbnail: Thumbnail, size: int = THUMBNAIL_PX) -> bytes:
    """A report thumbnail (a data: URI) as a small palette PNG."""
    encoded = thumbnail.uri.split(",", 1)[1]
    return compact_png(base64.b64decode(encoded), size, size, THUMBNAIL_COLOURS, dither=True)


def mistakes_markdown(mistakes: list[Thumbnail], metrics: Metrics) -> list[str]:
    """The most confident mistakes as rows of thumbnails, each over its true → predicted class and its file."""
    lines = ["### Most confident mistakes", ""]
    if not mistakes:
        return lines + [no_thumbnails_text(metrics), ""]
    lines += ["Validation images the model got wrong with the highest confidence: true → predicted (confidence).", ""]
    for start in range(0, len(mistakes), MISTAKES_PER_ROW):
        row = mistakes[start:start + MISTAKES_PER_ROW]
        lines += [
            "| " + " | ".join(f"![mistake {start + i + 1}]({png_uri(thumbnail_png(t))})" for i, t in enumerate(row)) + " |",
            "| " + " | ".join(":---:" for _ in row) + " |",
            "| " + " | ".join(escape(t.caption) for t in row) + " |",
            "| " + " | ".join(escape(Path(t.detail).name) for t in row) + " |",
            "",
        ]
    return lines


class ReportLocation(BaseModel):
    """Where a run's report.html is, and the URL it is served at when the run folders are served over HTTP."""

    path: Path
    host: str
    url: str | None


def locate_report(html_path: Path, run_id: str, base_url: str | None, host: str) -> ReportLocation:
    """report.html's URL is `<base_url>/<run id>/report.html` when data_root/runs is served at base_url."""
    url = f"{base_url.rstrip('/')}/{run_id}/report.html" if base_url else None
    return ReportLocation(path=html_path.resolve(), host=host, url=url)


def location_markdown(location: ReportLocation) -> str:
    """Where report.html is and how to open it from another machine; a link only when there is a URL."""
    if location.url:
        return (f"[Open report.html]({location.url}) (served from the run folders: "
                f"{code(location.path)} on {escape(location.host)}).")
    return (
        f"report.html is a file on the worker {code(location.host)}: {code(location.path)}. It opens in a browser "
        f"on that machine. From elsewhere, copy it (one self-contained file): "
        f"{code(f'scp {location.host}:{location.path} .')}, then open the copy. To get a link here instead, serve "
        "the data root's runs/ folder over HTTP and set storage.report_base_url (`--report-base-url`) to its URL."
    )


@dataclass
class DashboardReport:
    """The retrain-report artifact's markdown, its size, and what was left out to keep it under the budget."""

    markdown: str
    size_bytes: int
    left_out: list[str]


def render_dashboard_report(content: ReportContent, location: ReportLocation,
                            budget_bytes: int = ARTIFACT_BUDGET_BYTES) -> DashboardReport:
    """The retrain-report artifact, figures and mistakes embedded, as large as the budget allows."""
    attempts = [
        ([], 1, True),
        (["the mistakes' thumbnails"], 1, False),
        (["the mistakes' thumbnails", "the figures' full size"], 2, False),
    ]
    for left_out, shrink, with_thumbnails in attempts:
        figures = {name: png_uri(compact_png(content.figures[name], FIGURE_WIDTH_PX // shrink,
                                             FIGURE_HEIGHT_PX // shrink))
                   for name in DASHBOARD_FIGURES if name in content.figures}
        markdown = compose(content, figures, content.mistakes if with_thumbnails else [], left_out, location,
                           budget_bytes)
        if len(markdown.encode()) <= budget_bytes:
            return DashboardReport(markdown, len(markdown.encode()), left_out)
    left_out = ["the mistakes' thumbnails", "the figures"]
    markdown = compose(content, {}, [], left_out, location, budget_bytes)
    return DashboardReport(markdown, len(markdown.encode()), left_out)


def compose(content: ReportContent, figures: dict[str, str], mistakes: list[Thumbnail], left_out: list[str],
            location: ReportLocation, budget_bytes: int) -> str:
    strip = mistakes_markdown(mistakes, content.metrics) if mistakes or not left_out else []
    if left_out:
        strip += [f"*Left out to keep this artifact under {byte_size(budget_bytes)}: "
                  f"{', '.join(left_out)}; report.html has everything.*", ""]
    return render_summary_markdown(content, figures, strip, location_markdown(location))
