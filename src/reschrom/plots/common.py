"""What every figure shares: the layout, fonts that cover every prompt's glyphs, figure text,
level labels and the chromatography heatmap.

Every figure module of :mod:`reschrom.plots` draws with plain matplotlib on the headless Agg
backend, in ``constrained_layout`` so that no two labels overlap at any dpi (tests/plots/test_plots.py
checks every figure), and imports neither torch nor diffusers: a plotting job starts in well under
a second or two.
"""

from __future__ import annotations

import functools
import textwrap

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib import font_manager

from reschrom.measure.prompts import prompt_id

LAYOUT = "constrained"
"""The layout engine of every figure: keeps labels, titles and colorbars apart."""


def wrap(text: str, width: int = 28, max_chars: int = 120) -> str:
    """``text`` shortened to ``max_chars`` (an ellipsis marks the cut) and wrapped at ``width``."""
    text = " ".join(str(text).split())
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


FALLBACK_FONTS = (
    "Noto Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans JP",
    "Noto Sans SC",
    "Noto Sans KR",
    "Noto Sans Arabic",
    "Noto Sans Devanagari",
    "Noto Sans Hebrew",
    "Noto Sans Thai",
    "Noto Emoji",
    "Noto Sans Symbols",
    "Noto Sans Symbols 2",
    "Symbola",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "IPAexGothic",
    "Unifont",
)
"""Fonts with wide Unicode coverage that figure text falls back to, in this order, after DejaVu
Sans (matplotlib's own), where installed (e.g. Debian's fonts-noto-core, fonts-noto-cjk). Colour
emoji fonts (bitmap glyphs) are left out: the Agg backend cannot scale them."""


@functools.cache
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then each installed font of :data:`FALLBACK_FONTS`: the font family list every
    figure draws with (matplotlib takes a missing glyph from the next family of the list)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(f for f in FALLBACK_FONTS if f in installed))


@functools.cache
def _covered() -> frozenset[int]:
    """Every code point some font of :func:`font_families` has a glyph for."""
    from matplotlib.ft2font import FT2Font

    points: set[int] = set()
    for family in font_families():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        points.update(FT2Font(path).get_charmap())
    return frozenset(points)


def missing_glyphs(text: str) -> str:
    """The characters of ``text`` (whitespace aside) that no figure font can draw, in order, once."""
    covered = _covered()
    return "".join(dict.fromkeys(c for c in str(text) if not c.isspace() and ord(c) not in covered))


def figure_text(text: str, width: int | None = None, max_chars: int = 120, quote: bool = False, suffix: str = "") -> str:
    """User text (a prompt, a category) as figure text: the text (in “quotes” with ``quote``)
    where the figure fonts draw every character of it, else its prompt id (``<ascii slug>-<hash>``,
    the name of its files under ``results/``), so that no title shows empty boxes; then
    ``suffix``; wrapped at ``width`` (:func:`wrap`) when given; ``$`` escaped (drawn literally,
    never read as mathtext)."""
    text = str(text)
    if missing_glyphs(text):
        text = prompt_id(text)
    elif quote:
        text = f"“{text}”"
    text += suffix
    if width:
        text = wrap(text, width, max_chars)
    return text.replace("$", r"\$")


def use_fonts() -> None:
    """Draw every figure with :func:`font_families` (called on import of this module)."""
    matplotlib.rcParams["font.family"] = list(font_families())


use_fonts()


def level_label(r: int) -> str:
    """A level's tick label: its side length as R×R."""
    return f"{int(r)}×{int(r)}"


def _pivot_r(df: pd.DataFrame, value: str = "r") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix rows = levels coarse→fine top→bottom… , t_frac descending, resolutions)."""
    piv = df.pivot_table(index="resolution", columns="t_frac", values=value, dropna=False)
    piv = piv.sort_index(ascending=True)  # coarsest level (1×1, or c×c e.g. 7×7) first … R×R last
    piv = piv[sorted(piv.columns, reverse=True)]  # T → 0 from left to right
    return piv.to_numpy(), np.asarray(piv.columns), np.asarray(piv.index)


def chromatography_heatmap(ax, df: pd.DataFrame, value: str = "r", title: str = "", vmax=None):
    """Heatmap of r_m(t): rows coarsest … R×R (labelled from the ``resolution`` column, e.g.
    1×1 … 64×64 or 7×7 … 28×28), time T → 0 from left to right (paper Fig. 4)."""
    mat, t, res = _pivot_r(df, value)
    im = ax.imshow(
        mat,
        aspect="auto",
        origin="upper",
        cmap="magma",
        extent=(t[0], t[-1], len(res) - 0.5, -0.5),
        vmin=0,
        vmax=vmax,
        interpolation="nearest",
    )
    # at most ~8 row labels, so that a tall pyramid (e.g. 1024 → 11 levels) stays legible
    step = max(1, int(np.ceil(len(res) / 8)))
    rows = list(range(len(res)))[::-1][::step][::-1]
    ax.set_yticks(rows)
    ax.set_yticklabels([level_label(res[i]) for i in rows], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("t / T   (noise → data)", fontsize=9)
    ax.set_title(title, fontsize=10)
    return im
