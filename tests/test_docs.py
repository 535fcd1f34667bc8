"""The README and docs/ hold together: every relative link reaches a file, every #anchor a heading in it.

Plain text parsing, no network: links to http(s) pages are not followed. Anchors are GitHub's: the heading's
text in lower case, punctuation dropped, spaces as hyphens, -1, -2 ... for repeats.
"""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
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
        block = re.search(rf"^.*(?:(?<![\w/])|(?<=^tuneflow/)){re.escape(entry)}.*(?:\n\s{{6,}}\S.*)*", text, re.MULTILINE)
        assert block and re.search(rf"\b{re.escape(name)}\b", block.group(0)), f"{folder}/{name} not under {entry}"


# --- the command line and the code the docs name -------------------------------------------------------------------

OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
INLINE_CODE_TEXT = re.compile(r"`([^`]+)`")
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}


def cli_parsers() -> dict[str, argparse.ArgumentParser]:
    """`tuneflow` itself (under "") and each subcommand, as the CLI's own build_parser builds them."""
    from tuneflow.cli import build_parser

    parser = build_parser()
    parsers = {"": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update(action.choices)
    return parsers


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def command_fragments(page: Path) -> list[tuple[int, str]]:
    """(line, code) for each inline code span and each command of a shell code block (continued lines joined);
    (line, "") where a paragraph, a table row, a code block or a section ends."""
    found, fence, continued = [], None, ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if opening := FENCE.match(line):
            fence = None if fence is not None else line.strip()[len(opening.group(1)):].strip()
            found.append((number, ""))
        elif fence is not None:
            if fence in SHELL_FENCES:
                command = continued + line.split(" #")[0].strip()
                continued = command[:-1] if command.endswith("\\") else ""
                if not continued:
                    found.append((number, command))
        elif not line.strip() or HEADING.match(line):
            found.append((number, ""))
        else:
            if line.lstrip().startswith("|"):
                found.append((number, ""))  # each row of a table is one setting, as a paragraph is one topic
            found += [(number, code.strip()) for code in INLINE_CODE_TEXT.findall(line)]
    return found


def other_program(words: list[str]) -> bool:
    """`prefect worker start ...`, `make test`, `bench/scale_bench.py`: a command line of a program not ours."""
    if words[0].removeprefix(".venv/bin/") == "tuneflow" or words[0].startswith("--"):
        return False
    return words[0].startswith(("bench/", "scripts/")) or (
        len(words) > 1 and re.fullmatch(r"[a-z][a-z0-9_.-]*", words[0].removeprefix(".venv/bin/"), re.ASCII) is not None)


def undocumented_options(page: Path, parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Options the CLI lacks: those of a `tuneflow <command> ...` that command lacks, and those named alone
    (`--zoom 0.2`, a table of settings) that no tuneflow command has. An option alone belongs to another program
    when one is named before it in its paragraph (`tensorboard ...` (add `--bind_all`)), or when that program's
    command line on the page has it (`prefect worker start --limit 1` above; `--limit 1` keeps ...)."""
    fragments = command_fragments(page)
    theirs = {option for _, code in fragments if code and other_program(code.split()) for option in OPTION.findall(code)}
    every = set().union(*(options_of(parser) for parser in parsers.values()))
    missing, ours = [], True
    for number, code in fragments:
        words = code.split()
        if not words:
            ours = True  # a new paragraph, code block or section
        elif other_program(words):
            ours = False
        elif words[0].removeprefix(".venv/bin/") == "tuneflow":
            command = words[1] if len(words) > 1 and words[1] in parsers else ""
            missing += [f"{page.name}:{number}: {option} is not an option of `{' '.join(['tuneflow', command]).strip()}`"
                        for option in OPTION.findall(code) if option not in options_of(parsers[command])]
        elif words[0].startswith("--") and ours:
            missing += [f"{page.name}:{number}: {option} is not an option of any tuneflow command"
                        for option in OPTION.findall(code) if option not in every | theirs]
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_option_the_docs_name_exists_in_the_cli(page):
    missing = undocumented_options(page, cli_parsers())
    assert not missing, "options the docs name but the CLI lacks:\n  " + "\n  ".join(missing)


def test_the_option_check_reads_commands_and_their_sections(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A\n\nRun `tuneflow retrain --source x --horizontal-flip` or `tuneflow runs prune --keep 1`.\n"
        "Also `--zoom 0.2` and `--no-such-thing`; `prefect worker start --limit 1`, then `--limit 1` again.\n\n"
        "`--limit 2` is prefect's, named above. `--zoom` once more, not `--no-zoom`.\n"
        "## B\n\n```bash\n.venv/bin/tuneflow export current --format onnx \\\n  --dry-run   # not export's\n```\n",
        encoding="utf-8",
    )
    missing = [line.split(": ", 1)[1] for line in undocumented_options(page, cli_parsers())]
    assert missing == ["--horizontal-flip is not an option of `tuneflow retrain`",
                       "--no-such-thing is not an option of any tuneflow command",
                       "--no-zoom is not an option of any tuneflow command",
                       "--dry-run is not an option of `tuneflow export`"]


# tuneflow.flows, tuneflow.tasks and tuneflow.ops live at the top of the repository (pyproject.toml's package-dir).
TOP_LEVEL_PACKAGES = {package.split(".")[1]: folder for package, folder in
                      tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].items()}


def module_file(parts: list[str]) -> Path | None:
    """The source of module tuneflow.<parts...>, where pyproject.toml's package-dir puts it."""
    if parts[:1] and parts[0] in TOP_LEVEL_PACKAGES:
        path = REPO.joinpath(TOP_LEVEL_PACKAGES[parts[0]], *parts[1:])
    else:
        path = REPO.joinpath("tuneflow", *parts)
    return next((file for file in (path.with_suffix(".py"), path / "__init__.py") if file.is_file()), None)


def defines(source: Path, name: str) -> bool:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def resolves(dotted: str) -> bool:
    """tuneflow.<module path>[.<name>]: the module exists and defines the name (a class's member is not checked)."""
    parts = dotted.split(".")[1:]
    for cut in range(len(parts), -1, -1):
        if (source := module_file(parts[:cut])) is not None:
            return cut == len(parts) or defines(source, parts[cut])
    return False


def code_strings() -> set[str]:
    """Every string literal of the code: a dotted name that is one (an event name) is not a module path."""
    strings = set()
    for path in [*REPO.glob("tuneflow/**/*.py"), *(path for folder in TOP_LEVEL_PACKAGES.values()
                                                     for path in REPO.glob(f"{folder}/*.py"))]:
        strings |= {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return strings


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_module_path_the_docs_cite_exists(page):
    strings = code_strings()
    cited = {name for name in re.findall(r"(?<![\w/.-])tuneflow(?:\.\w+)+", page.read_text(encoding="utf-8"))}
    stale = sorted(name for name in cited if name not in strings and not resolves(name))
    assert not stale, f"{page.relative_to(REPO)} cites what the code does not have: {stale}"
