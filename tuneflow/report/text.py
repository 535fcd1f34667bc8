"""Text from an archive (class and file names, sources) made safe to put into markdown, and markdown tables.

Every markdown writer (report.md, the dashboard's markdown artifacts) passes names through `escape`, so that a
class folder called `<img src=x onerror=alert(1)>` or `*best* | [pizza](http://x)` shows as exactly those
characters and never becomes an element, a link, emphasis or a new table cell. The Prefect UI renders markdown
with raw HTML let through, so HTML has to be neutralised here, not by the renderer.

The rules follow CommonMark and GitHub Flavored Markdown (what the UI's renderer speaks):
- `&`, `<`, `>` become character references (`&lt;` shows as `<`): no tag, comment or entity can form;
- backslash, backtick, `*`, `[`, `]`, `|`, `~` and `@` are backslash-escaped, and so are the `:` of `://` and the
  `.` of `www.`: no emphasis, code span, link, image, table cell, strikethrough or autolink (`http://...`,
  `www...`, `a@b`) can start from a name, while ordinary sentences (`paired on 12 photos: ...`) stay as written;
- `_` is escaped unless it sits between two letters or digits, where CommonMark never reads it as emphasis (so
  `apple_pie` stays readable in report.md);
- what would open a block at the start of a line or list item (`# `, `+ `, `- `, `---`, `1. `, `1) `) is escaped;
- line breaks and tabs become spaces, so a name stays on its line (and in its table row).
Letters of any script (ラーメン) are left as they are.
"""

from __future__ import annotations

import re

from tuneflow.formatting import UNDEFINED, is_undefined

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKSLASHED = set("\\`*[]|~@")
# What opens a block at the start of a line or a list item's text: a heading, a list item, a thematic break.
_BLOCK_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|[+\-](?=\s|$)|-(?=[-\s]*$)|\d{1,9}[.)](?=\s|$))")


def escape(text: object) -> str:
    """`text` (any value, as str) as markdown inline text that renders as exactly those characters."""
    text = re.sub(r"[\r\n\t\v\f]+", " ", str(text))
    out = []
    for index, char in enumerate(text):
        if char in _HTML:
            out.append(_HTML[char])
        elif char in _BACKSLASHED:
            out.append("\\" + char)
        elif char == ":" and text.startswith("//", index + 1):
            out.append("\\:")
        elif char == "." and text[max(0, index - 3):index].lower() == "www":
            out.append("\\.")
        elif char == "_":
            before = text[index - 1] if index else ""
            after = text[index + 1] if index + 1 < len(text) else ""
            out.append("_" if before.isalnum() and after.isalnum() else "\\_")
        else:
            out.append(char)
    escaped = "".join(out)
    # A block marker at the very start: escape its punctuation (for "1." the dot).
    return _BLOCK_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], escaped, count=1)


def cell(value: object, spec: str = ".3f") -> str:
    """One table cell: floats formatted, undefined values as UNDEFINED, everything else escaped text."""
    if is_undefined(value):
        return UNDEFINED
    if isinstance(value, float):
        return format(value, spec)
    return escape(value)


def table(columns: list[str], rows: list[list[object]], spec: str = ".3f", right: set[str] = frozenset()) -> str:
    """A GFM table; every header and cell goes through `cell`. Columns named in `right` align right."""
    header = "| " + " | ".join(escape(c) for c in columns) + " |"
    rule = "| " + " | ".join("---:" if c in right else "---" for c in columns) + " |"
    body = ["| " + " | ".join(cell(v, spec) for v in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def code(text: object) -> str:
    """`text` as an inline code span, fenced with more backticks than it holds in a row (CommonMark's rule), so
    nothing in it can end the span early; line breaks become spaces. Not for table cells (a `|` would split it)."""
    text = re.sub(r"[\r\n]+", " ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def training_setup_text(training: dict) -> str:
    """One sentence on how the model was trained: devices, the precision used and whether XLA really compiled
    the training step (read back from the compiled model), from the report's training summary."""
    xla = {True: "applied", False: "not applied"}.get(training.get("xla_applied"), "not recorded")
    reason = f": {training['xla_reason']}" if training.get("xla_reason") else ""  # why, e.g. "off on CPUs"
    return (f"Trained on {', '.join(training['devices'])} ({training['replicas']} replica(s)), precision "
            f"{training['precision']} (requested {training.get('precision_requested', UNDEFINED)}); XLA {xla} "
            f"(requested {training.get('jit_compile_requested', UNDEFINED)}{reason}).")
