"""Accuracy across retrainings: one row per model version, read from the model registry (tuneflow.registry.versions).

The registry's version.json files outlive the run folders (a user may delete those, retention prunes them), so
the history is built from them alone. Versions stored before a field was recorded show it as undefined (—).
The report task publishes the result as the `retrain-history` dashboard artifact; report.html shows its chart.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure
from pydantic import BaseModel, Field

from tuneflow.report import plots
from tuneflow.formatting import UNDEFINED, number, percent
from tuneflow.report.text import escape, table
from tuneflow.registry.versions import current_version, list_versions, read_version_record

# Most telling first: the dashboard's artifact pane cuts off what does not fit its width (so the model in use is
# named in the "promoted" column, not one of its own, and long revision IDs are shortened).
HISTORY_COLUMNS = ["version", "promoted", "accuracy", "macro F1", "trained", "data revision", "photos"]
# Drive revision IDs run to 50 characters; this many tell neighbouring revisions apart (version.json has them all).
REVISION_SHOWN = 12


class VersionRow(BaseModel):
    """One model version as the history shows it."""

    version: str
    stored_at: datetime | None = Field(description="When the version was stored (UTC).")
    data_revision: str | None = Field(description="The Drive revision it trained on, else its archive's MD5 (shortened).")
    training_photos: int | None
    validation_photos: int | None
    accuracy: float | None = Field(description="On its own run's validation photos.")
    macro_f1: float | None
    promoted: bool | None = Field(description="Whether its run put it into use; None for versions that predate it.")
    in_use: bool = Field(description="Whether models/current points at it now.")


def data_revision(archive: dict | None) -> str | None:
    """What identifies the data: the Drive revision when the archive came from Drive, else its MD5."""
    archive = archive or {}
    if archive.get("drive_revision"):
        revision = archive["drive_revision"]
        return f"Drive {revision[:REVISION_SHOWN]}{'…' if len(revision) > REVISION_SHOWN else ''}"
    return f"MD5 {archive['md5'][:8]}" if archive.get("md5") else None


def read_history(data_root: Path) -> list[VersionRow]:
    """Every stored version, oldest first, with the one in use marked."""
    in_use = current_version(data_root)
    rows = []
    for version in list_versions(data_root):
        record = read_version_record(data_root, version)
        stored_at = record.get("stored_at")
        rows.append(VersionRow(
            version=version,
            stored_at=datetime.fromisoformat(stored_at) if stored_at else None,
            data_revision=data_revision(record.get("archive")),
            training_photos=record.get("training_photos"),
            validation_photos=record.get("validation_photos"),
            accuracy=record.get("accuracy"),
            macro_f1=record.get("macro_f1"),
            promoted=record.get("promoted"),
            in_use=version == in_use,
        ))
    return rows


def photos_text(row: VersionRow) -> str:
    """Photos it trained and was validated on: "30 (24 + 6)"; what is known of it for older versions."""
    if row.training_photos is None:
        return UNDEFINED
    if row.validation_photos is None:
        return f"{row.training_photos:,} trained on"
    return f"{row.training_photos + row.validation_photos:,} ({row.training_photos:,} + {row.validation_photos:,})"


def promoted_text(row: VersionRow) -> str:
    """Whether its run promoted it, and whether it is in use now (a rollback can put any version in use)."""
    promoted = UNDEFINED if row.promoted is None else ("yes" if row.promoted else "no")
    return f"{promoted}, in use" if row.in_use else promoted


def history_cells(row: VersionRow) -> list[str]:
    """The row as the table shows it, in HISTORY_COLUMNS order: text, — where unknown."""
    return [
        row.version,
        promoted_text(row),
        percent(row.accuracy),
        number(row.macro_f1),
        row.stored_at.strftime("%Y-%m-%d %H:%M") if row.stored_at else UNDEFINED,
        row.data_revision or UNDEFINED,
        photos_text(row),
    ]


def render_history_markdown(rows: list[VersionRow], chart_uri: str | None) -> str:
    """The retrain-history artifact: the chart of accuracy over time, then every version, newest first."""
    in_use = next((row for row in rows if row.in_use), None)
    promoted = sum(1 for row in rows if row.promoted)
    lines = [
        "# Accuracy across retrainings",
        "",
        f"{len(rows)} model versions, {promoted} of them promoted when trained; in use: "
        f"**{escape(in_use.version) if in_use else 'none'}**"
        + (f" ({percent(in_use.accuracy)})" if in_use else "") + ".",
        "",
    ]
    if chart_uri:
        lines += [f"![validation accuracy of every model version]({chart_uri})", ""]
    lines += [
        table(HISTORY_COLUMNS, [history_cells(row) for row in reversed(rows)],
              right={"photos", "accuracy", "macro F1"}),
        "",
        "Accuracy and macro F1 are each version's own validation photos (a new upload changes them), so compare "
        "neighbouring versions through the `retrain-report` artifact's paired comparison, which grades both on "
        "the same photos.",
        "",
    ]
    return "\n".join(lines)


def history_figure(rows: list[VersionRow]) -> Figure | None:
    """The accuracy-over-time chart, or None before any version is stored."""
    if not rows:
        return None
    return plots.accuracy_over_time(
        [row.version for row in rows],
        [row.stored_at.strftime("%Y-%m-%d") if row.stored_at else UNDEFINED for row in rows],
        [row.accuracy for row in rows],
        [row.promoted for row in rows],
        next((row.version for row in rows if row.in_use), None),
    )


def history_chart(rows: list[VersionRow]) -> bytes | None:
    """The accuracy-over-time chart as PNG, or None before any version is stored."""
    figure = history_figure(rows)
    return None if figure is None else plots.png(figure)
