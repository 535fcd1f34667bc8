"""The fonts every figure is drawn in, set here and nowhere else, and what a figure calls a class.

Matplotlib's own DejaVu Sans draws Latin text exactly as it always did; Noto Sans CJK JP, shipped in a wheel
(`noto-cjk-sans-jp-regular`, so no machine needs a system font), draws the Japanese, Chinese and Korean class
names DejaVu Sans has no glyphs for. Matplotlib falls back along `font.family` glyph by glyph, so one label may
mix both. A name with a character neither font has (an emoji, a script neither covers) would be drawn as boxes:
such a class is called `#<index>` in the figures instead, and the report lists those numbers with the real names.

Why this font (measured on 166 real dish names, docs/report-and-promotion.md has the table): it draws all 61
Japanese, 65 Chinese and 40 Korean names in a 13.6 MB wheel. IPAexGothic (matplotlib-fontja, 4.2 MB) draws the
Japanese ones but 31 of the 65 Chinese and none of the Korean; the Noto Sans CJK variable font (19.8 MB) draws
everything but in its default weight, Thin, since matplotlib cannot pick a weight of a variable font.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import matplotlib
from matplotlib import font_manager
from matplotlib.font_manager import FontProperties
from noto_cjk_sans_jp_regular import FONT_PATH as CJK_FONT_PATH

# First the font the figures always had (matplotlib's default, bundled with it), so Latin text is unchanged.
FONT_FAMILIES = ["DejaVu Sans", "Noto Sans CJK JP"]

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def figure_style() -> dict:
    """The rcParams of every figure; registers the CJK font with matplotlib the first time."""
    font_manager.fontManager.addfont(str(CJK_FONT_PATH))
    return {"font.family": FONT_FAMILIES}


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """`draw` (a function that builds a figure) run with the figures' fonts; its text keeps them when saved later."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(figure_style()):
            return draw(*args, **kwargs)

    return drawn


@functools.cache
def _drawable_characters() -> frozenset[int]:
    figure_style()
    characters: set[int] = set()
    for family in FONT_FAMILIES:
        # The file matplotlib itself draws this family from; fails loudly if the family is not installed.
        path = font_manager.findfont(FontProperties(family=family), fallback_to_default=False)
        characters |= font_manager.get_font(path).get_charmap().keys()
    return frozenset(characters)


def drawable(text: str) -> bool:
    """Whether the figures' fonts have a glyph for every character of `text`."""
    return all(ord(character) in _drawable_characters() for character in text)


def class_labels(classes: list[str]) -> dict[str, str]:
    """What the figures call each class: its name, or `#<index>` (its place in classes.json) when a character of
    the name has no glyph in the figures' fonts."""
    return {name: name if drawable(name) else f"#{index}" for index, name in enumerate(classes)}


def numbered_classes(classes: list[str]) -> list[tuple[str, str]]:
    """(number, name) of each class the figures call by number; empty when they can draw every name."""
    return [(label, name) for name, label in class_labels(classes).items() if label != name]
