"""Figures and report tables, one module per stage, each from the Parquet tables only.

:mod:`~reschrom.plots.common` holds what every figure shares (layout, fonts, figure text, the
chromatography heatmap); :mod:`~reschrom.plots.theory`, :mod:`~reschrom.plots.chromatography`,
:mod:`~reschrom.plots.categories`, :mod:`~reschrom.plots.compose`, :mod:`~reschrom.plots.upscale`,
:mod:`~reschrom.plots.training`, :mod:`~reschrom.plots.design`, :mod:`~reschrom.plots.guidance`
draw one stage each;
:mod:`~reschrom.plots.tables` writes the report's tables. **A new figure goes into its stage's
module here**, with a ``scripts/plot_*.py``, a rule and a ``report/*.rst`` caption.

No module imports torch or diffusers (tests/plots/test_plots.py): a plotting job starts in about a second.

May import: every layer below (:mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.measure`,
:mod:`reschrom.compose` …), their torch-free modules only.

Every public name of the submodules is also importable from the package itself
(``reschrom.plots.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'plot_category_chromatography': 'categories',
    'plot_measured_chromatography': 'chromatography',
    'plot_prompt_chromatography': 'chromatography',
    'FALLBACK_FONTS': 'common',
    'LAYOUT': 'common',
    'chromatography_heatmap': 'common',
    'figure_text': 'common',
    'font_families': 'common',
    'level_label': 'common',
    'missing_glyphs': 'common',
    'use_fonts': 'common',
    'wrap': 'common',
    'load_png': 'compose',
    'pair_label': 'compose',
    'plot_compose_grid': 'compose',
    'plot_compose_pairs': 'compose',
    'plot_x0_spectra': 'compose',
    'NFE_METRICS': 'design',
    'plot_design': 'design',
    'plot_nfe': 'design',
    'plot_shift': 'design',
    'METHOD_STYLE': 'guidance',
    'plot_guidance_design': 'guidance',
    'Column': 'tables',
    'guidance_table_html': 'tables',
    'STYLE': 'tables',
    'TABLES': 'tables',
    'agreement_table_html': 'tables',
    'compose_table_html': 'tables',
    'level_header': 'tables',
    'upscale_table_html': 'tables',
    'write_report_table': 'tables',
    'plot_chromatography_atlas': 'theory',
    'plot_chromatography_theory': 'theory',
    'plot_time_adjustment': 'theory',
    'FLOW_CLASS_NAME': 'training',
    'FLOW_MODEL_FILE': 'training',
    'plot_training_log': 'training',
    'plot_training_logs': 'training',
    'ROW_LABELS': 'upscale',
    'plot_upscale_grid': 'upscale',
    'plot_upscale_spectra': 'upscale',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
