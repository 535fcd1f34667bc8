"""The README and docs/ hold together: every relative link reaches a file, every #anchor a heading in it.

Plain text parsing, no network: links to http(s) pages are not followed. Anchors are GitHub's: the heading's
text in lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for repeats.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`]*`")
# [text](target) and ![alt](target); the text may hold `code` but no brackets.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")


def prose_lines(text: str) -> list[str]:
    """The lines a reader sees as text: fenced code blocks left out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")  # drops `, *, :, ...


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return targets


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE))  # https:, mailto:, ...


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_reaches_a_file_and_heading(page):
    broken = []
    for target in links(page):
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.exists():
            shown = destination.relative_to(REPO) if destination.is_relative_to(REPO) else destination
            broken.append(f"{target}: no file {shown}")
        elif anchor and destination.suffix == ".md" and unquote(anchor).lower() not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)} has broken links:\n  " + "\n  ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = REPO / "README.md"
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(readme) if not is_external(target)}
    orphans = [page.relative_to(REPO).as_posix() for page in PAGES[1:] if page not in linked]
    assert not orphans, f"docs pages no README link leads to: {orphans}"


def test_the_readme_names_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Two commands" in readme
    for command in ("make demo", "make test"):
        assert re.search(rf"^{command}\s+#", readme, re.MULTILINE), f"README's Two commands lacks `{command}`"


def test_anchors_follow_githubs_rules():
    assert slug("Try it on one machine: `make stack`") == "try-it-on-one-machine-make-stack"
    assert slug("Settings, at deploy time and on the workers") == "settings-at-deploy-time-and-on-the-workers"
    assert slug("Training: the recipe, GPUs, progress, resuming") == "training-the-recipe-gpus-progress-resuming"
    assert slug("`resume_run_id` and ラーメン") == "resume_run_id-and-ラーメン"


CODE_MAP_PAGE = REPO / "docs" / "development.md"


def code_map() -> str:
    text = CODE_MAP_PAGE.read_text()
    section = text[text.index("## How the code is laid out"):text.index("## How the tests run")]
    return section[section.index("```"):]  # the tree drawn in the fenced block


def library_modules() -> list[tuple[str, str]]:
    """(folder, module name) of every module and subpackage of tuneflow/ on disk, __init__ aside."""
    found = []
    for path in sorted((REPO / "tuneflow").rglob("*")):
        if "__pycache__" in path.parts or path.name == "templates" or "templates" in path.parts:
            continue
        if path.is_dir() or (path.suffix == ".py" and path.stem != "__init__"):
            found.append((path.parent.relative_to(REPO).as_posix(), path.stem))
    return found


@pytest.mark.parametrize(("folder", "name"), library_modules(), ids=lambda value: value)
def test_the_code_map_names_every_module_and_subpackage(folder, name):
    """docs/development.md's code map names every module that exists, under its own folder's entry."""
    text = code_map()
    assert re.search(rf"\b{re.escape(name)}\b", text), f"{folder}/{name} is missing from the code map in {CODE_MAP_PAGE}"
    if folder != "tuneflow":
        # Named in its folder's paragraph: the line that starts with the folder, and the lines indented under it.
        entry = folder.removeprefix("tuneflow/").split("/")[-1] + "/"
        block = re.search(rf"^.*(?<![\w/]){re.escape(entry)}.*(?:\n\s{{6,}}\S.*)*", text, re.MULTILINE)
        assert block and re.search(rf"\b{re.escape(name)}\b", block.group(0)), f"{folder}/{name} not under {entry}"
