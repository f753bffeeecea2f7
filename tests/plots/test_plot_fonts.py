"""Figure text covers the prompts users write: emoji, Chinese/Japanese, '$'. Every figure that
shows user text (a prompt's heatmap title, a composing pair's row label, a category's row title)
draws without a "Glyph … missing from font(s)" warning: each text is drawn by the figure fonts
(reschrom.plots.common.font_families: DejaVu Sans and any installed wide-coverage font), or replaced by
its prompt id where they lack a character."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib import font_manager
from matplotlib.text import Text
from test_plots import _compose, _dump

from reschrom.io import write_parquet
from reschrom.measure.aggregate import aggregate_chromatography
from reschrom.measure.prompts import prompt_id
from reschrom.plots import categories as plots_categories
from reschrom.plots import chromatography as plots_chromatography
from reschrom.plots import common as plots
from reschrom.plots import compose as plots_compose
from reschrom.plots.common import figure_text, font_families, missing_glyphs

EMOJI = "a cute 🐶 on the grass"
CJK = "芝生の上の柴犬"
DOLLARS = "a $5 bill next to a $10 bill"
PLAIN = "a naïve café → a red circle"  # non-ASCII, but in DejaVu Sans


@pytest.fixture
def drawn(monkeypatch):
    """(texts drawn, warnings raised) of every figure a plot function saves."""
    texts: list[str] = []
    caught: list[str] = []
    orig = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text():
            texts.append(self.get_text())
        return orig(self, renderer)

    def save(fig, path, dpi=120):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fig.savefig(path, dpi=dpi, format="png")
        caught.extend(str(x.message) for x in w)
        plt.close(fig)

    monkeypatch.setattr(Text, "draw", draw)
    for mod in (plots_chromatography, plots_compose, plots_categories):
        monkeypatch.setattr(mod, "save_figure", save)
    return texts, caught


def _no_missing_glyphs(texts: list[str], caught: list[str]) -> None:
    assert texts
    assert not [m for m in caught if "missing from font" in m], caught
    for t in texts:
        assert not missing_glyphs(t), (t, missing_glyphs(t))


def test_prompt_titles_with_emoji_cjk_and_dollars(tmp_path, drawn):
    texts, caught = drawn
    prompts = [EMOJI, CJK, DOLLARS, PLAIN]
    dumps = [_dump(tmp_path, p, seed=i) for i, p in enumerate(prompts)]
    plots_chromatography.plot_prompt_chromatography(dumps, tmp_path / "p.png", model="toy", dpi=40)
    _no_missing_glyphs(texts, caught)
    joined = "\n".join(" ".join(t.split()) for t in texts).replace(r"\$", "$")
    for p in prompts:  # each prompt is shown as itself, or (lacking glyphs) by its id
        assert f"“{p}”" in joined if not missing_glyphs(p) else prompt_id(p) in joined, (p, joined)
    assert "“a naïve café → a red circle”" in joined  # drawable text is never replaced
    # '$' is drawn literally, not as mathtext ("$5 bill next to a $" would be a formula)
    title = next(t for t in texts if "bill" in t)
    shown, is_math = Text(text=title)._preprocess_math(title)
    assert not is_math and " ".join(shown.split()) == f"“{DOLLARS}”", shown


def test_compose_row_labels_with_emoji_and_cjk(tmp_path, drawn):
    texts, caught = drawn
    pairs = [(EMOJI, CJK), ("a plain blue square on a light background", DOLLARS)]
    metrics, theory = _compose(tmp_path, [1.0, 0.5], pairs=pairs)
    plots_compose.plot_compose_grid(metrics, theory, tmp_path, [1.0, 0.5], tmp_path / "g.png", dpi=40)
    _no_missing_glyphs(texts, caught)


def test_category_titles_with_emoji_and_cjk(tmp_path, drawn):
    texts, caught = drawn
    tables = []
    for i, cat in enumerate(["动物 🐼", "plain"]):
        t = aggregate_chromatography([_dump(tmp_path, f"prompt {i} {j}", seed=j) for j in range(2)])
        tables.append(t.assign(category=cat))
    write_parquet(pd.concat(tables, ignore_index=True), tmp_path / "k.parquet")
    plots_categories.plot_category_chromatography(tmp_path / "k.parquet", tmp_path / "k.png", model="toy", dpi=40)
    _no_missing_glyphs(texts, caught)
    assert any(t.startswith("plain (2 prompts)") for t in texts), texts


def test_figure_text_keeps_drawable_text_and_names_the_rest():
    assert figure_text(PLAIN) == PLAIN
    assert figure_text(PLAIN, quote=True, suffix=" (1)") == f"“{PLAIN}” (1)"
    assert figure_text("grass", 3) == "gra\nss"
    assert figure_text(DOLLARS) == DOLLARS.replace("$", r"\$")
    for text in (EMOJI, CJK):
        if missing_glyphs(text):
            assert figure_text(text, quote=True, suffix=" (2)") == f"{prompt_id(text)} (2)"
        else:  # a wide-coverage font is installed: the text itself
            assert figure_text(text) == text
    assert missing_glyphs("🐶 a 🐶") in ("🐶", "")


def test_figures_draw_with_the_installed_fallback_fonts():
    installed = {f.name for f in font_manager.fontManager.ttflist}
    fams = font_families()
    assert fams[0] == "DejaVu Sans" and set(fams) <= installed | {"DejaVu Sans"}
    assert [f for f in plots.FALLBACK_FONTS if f in installed] == list(fams[1:])
    assert list(matplotlib.rcParams["font.family"]) == list(fams)


def test_an_installed_fallback_font_draws_what_dejavu_lacks(tmp_path, monkeypatch, drawn):
    """The fallback chain is real: with a second font in the list (STIX, which matplotlib ships,
    standing in for an installed Noto), a character only it has is drawn as itself, no warning."""
    from matplotlib.ft2font import FT2Font

    def charmap(family: str) -> set[int]:
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        return set(FT2Font(path).get_charmap())

    extra = sorted(c for c in charmap("STIXGeneral") - charmap("DejaVu Sans") if chr(c).isprintable())
    assert extra
    text = f"prompt {chr(extra[0])}{chr(extra[-1])}"
    assert missing_glyphs(text) and figure_text(text) == prompt_id(text)
    monkeypatch.setattr(plots, "FALLBACK_FONTS", ("STIXGeneral",))
    for f in (font_families, plots._covered):
        f.cache_clear()
    old = list(matplotlib.rcParams["font.family"])
    try:
        plots.use_fonts()
        assert font_families() == ("DejaVu Sans", "STIXGeneral")
        assert missing_glyphs(text) == "" and figure_text(text) == text
        texts, caught = drawn
        plots_chromatography.plot_prompt_chromatography([_dump(tmp_path, text)], tmp_path / "p.png", dpi=40)
        _no_missing_glyphs(texts, caught)
        assert any(text in " ".join(t.split()) for t in texts), texts
    finally:
        matplotlib.rcParams["font.family"] = old
        for f in (font_families, plots._covered):  # recomputed from the restored list
            f.cache_clear()
