"""The workflow's key tables as HTML for the Snakemake report (``results/tables/*.html``).

Each table is an HTML fragment (a ``<div>`` with its own small stylesheet): the report shows it
as a result of its category "Key tables (§4.1–4.3)", which the landing page (``report/workflow.rst``)
links to.
Three tables, each from the Parquet artifact of its stage:

- upscaling metrics (§4.2, Fig. 6): one row per variant, ``results/upscale/{dataset}/metrics.parquet``;
- agreement of the measured chromatography with the theory (§4.1, Fig. 4): one row per level,
  ``results/chromatography/{model}_agreement.parquet``;
- prompt-composing shares (§4.3, Fig. 7): the share of each level in the difference from the
  pure structure image, per η (mean over pairs, then per pair), ``results/compose/{model}/metrics.parquet``.

NumPy, pandas and the standard library only: a table job starts in well under a second.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from reschrom.io import atomic_path, read_parquet

STYLE = """<style>
.reschrom-table { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px;
  margin: 0.5em 0 1.5em 0; color: #222; max-width: 100%; overflow-x: auto; }
.reschrom-table h4 { margin: 0.2em 0 0.4em 0; font-size: 14px; }
.reschrom-table table { border-collapse: collapse; margin: 0.3em 0; }
.reschrom-table th, .reschrom-table td { border-bottom: 1px solid #ddd; padding: 3px 9px; text-align: right;
  white-space: nowrap; }
.reschrom-table th { background: #f3f4f6; border-bottom: 2px solid #999; }
.reschrom-table th:first-child, .reschrom-table td:first-child { text-align: left; }
.reschrom-table tr.best td { font-weight: 600; }
.reschrom-table p, .reschrom-table dl { margin: 0.3em 0; max-width: 60em; }
.reschrom-table dt { font-weight: 600; float: left; clear: left; margin-right: 0.5em; }
.reschrom-table dd { margin: 0 0 0.15em 0; }
</style>"""


@dataclass(frozen=True)
class Column:
    """One displayed column: its header, what it means, and how to format a value."""

    key: str
    header: str
    meaning: str
    fmt: Callable[[object], str]


def _num(spec: str) -> Callable[[object], str]:
    def fmt(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return format(v, spec)

    return fmt


def _html_table(df: pd.DataFrame, columns: Sequence[Column], best: Sequence[bool] | None = None) -> str:
    head = "".join(f'<th title="{html.escape(c.meaning)}">{html.escape(c.header)}</th>' for c in columns)
    rows = []
    for i, (_, row) in enumerate(df.iterrows()):
        cls = ' class="best"' if best is not None and best[i] else ""
        cells = "".join(f"<td>{html.escape(c.fmt(row[c.key]))}</td>" for c in columns)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _legend(columns: Sequence[Column]) -> str:
    items = "".join(f"<dt>{html.escape(c.header)}</dt><dd>{html.escape(c.meaning)}</dd>" for c in columns)
    return f"<dl>{items}</dl>"


def _fragment(title: str, body: str, note: str = "") -> str:
    note_html = f"<p>{html.escape(note)}</p>" if note else ""
    return f'<div class="reschrom-table">\n{STYLE}\n<h4>{html.escape(title)}</h4>\n{body}\n{note_html}</div>\n'


def level_header(resolution: int) -> str:
    return f"{int(resolution)}×{int(resolution)}"


# ---- upscaling metrics (§4.2) -------------------------------------------------------------------


def upscale_table_html(metrics: pd.DataFrame, dataset: str = "") -> str:
    """One row per variant: log-spectral distance, residual noise, diversity, clipping, band
    energy ratios per level and the pixel statistics (``reschrom.measure.metrics``); the variant with
    the smallest log-spectral distance in bold."""
    levels = sorted(int(m.group(1)) for c in metrics for m in [re.fullmatch(r"energy_ratio_m(\d+)", c)] if m)
    cols = [
        Column("variant", "variant", "how the samples were made (rules/upscale.smk, config upscale.variants)", str),
        Column("lsd_db", "LSD (dB)", "log-spectral distance of the mean RAPSD to the data's: 0 is perfect",
               _num(".2f")),
        Column("residual_noise", "residual noise",
               "E‖g⁽⁰⁾‖² + E‖g⁽¹⁾‖² of samples over data's, minus 1: > 0 noise left, < 0 over-smoothed",
               _num("+.3f")),
        Column("diversity", "diversity", "mean pairwise distance of samples over the data's (1 = as diverse)",
               _num(".3f")),
        Column("diversity_coarse", "diversity 4×4", "the same of the 4×4 average-pooled images (layouts, colours)",
               _num(".3f")),
        Column("clip_fraction", "clipped", "fraction of pixels with |x| ≥ 1 before clamping", _num(".1%")),
        *[
            Column(f"energy_ratio_m{m}", f"E ratio m={m}",
                   f"band energy of level m = {m} (eq. 19; m = 0 finest) over the data's: 1 is right", _num(".2f"))
            for m in levels
        ],
        Column("pixel_mean", "mean", "pixel mean of the samples", _num("+.3f")),
        Column("pixel_std", "std", "pixel standard deviation of the samples", _num(".3f")),
    ]  # fmt: skip
    cols = [c for c in cols if c.key in metrics]
    lsd = metrics["lsd_db"] if "lsd_db" in metrics else None
    best = (lsd == lsd.min()).tolist() if lsd is not None and len(lsd) else None
    note = ""
    if {"n_data", "data_pixel_mean", "data_pixel_std"} <= set(metrics) and len(metrics):
        r = metrics.iloc[0]
        n = int(metrics["n_samples"].iloc[0]) if "n_samples" in metrics else "?"
        note = (
            f"{n} samples per variant against {int(r['n_data'])} held-out images "
            f"(pixel mean {r['data_pixel_mean']:+.3f}, std {r['data_pixel_std']:.3f}). "
            "Bold: the smallest log-spectral distance."
        )
    title = f"Upscaling metrics — {dataset}" if dataset else "Upscaling metrics"
    legend = [c for c in cols[1:] if not c.key.startswith("energy_ratio_m")]
    if levels:
        legend.insert(5, Column("", "E ratio m=k", "band energy of level k (eq. 19; k = 0 is the full "
                                "resolution, each further level half the side) over the data's: 1 is right", str))
    return _fragment(title, _html_table(metrics, cols, best) + _legend(legend), note)


# ---- agreement with the theory (§4.1) -----------------------------------------------------------


def agreement_table_html(agreement: pd.DataFrame, model: str = "") -> str:
    """One row per level: peak times of the measured r̃_m and the theoretical r_m and their
    difference; the per-model rank correlation and Jensen–Shannon divergences below."""
    df = agreement.sort_values("m", ascending=False)  # 1×1 first, as in the heatmaps
    cols = [
        Column("resolution", "level", "the level's resolution (m = 0 is the full resolution)", level_header),
        Column("m", "m", "level index", str),
        Column("peak_t_measured", "peak t/T measured", "where the measured r̃_m(t) (eq. 19) peaks", _num(".3f")),
        Column("peak_t_theory", "peak t/T theory", "where the theoretical r_m(t) (eq. 18) peaks", _num(".3f")),
        Column("peak_t_diff", "difference", "measured − theory (t/T)", _num("+.3f")),
    ]  # fmt: skip
    note = ""
    if len(df):
        r = df.iloc[0]
        rho = r.get("spearman_peak_order", float("nan"))
        rho_s = "undefined (a constant peak order)" if pd.isna(rho) else f"{rho:+.3f}"
        note = (
            f"Spearman rank correlation of the peak order across levels: {rho_s}. "
            f"Jensen–Shannon divergence between r̃(·|t) and r(·|t): mean {r.get('jsd_mean', float('nan')):.3f}, "
            f"max {r.get('jsd_max', float('nan')):.3f} bits over the {int(r.get('n_t', 0))} steps where r̃ is "
            "defined (0: identical, 1: disjoint)."
        )
    title = f"Measured vs theoretical chromatography — {model}" if model else "Measured vs theoretical chromatography"
    return _fragment(title, _html_table(df, cols), note)


# ---- prompt composing (§4.3) --------------------------------------------------------------------


def compose_table_html(metrics: pd.DataFrame, model: str = "") -> str:
    """The share of each level in ‖x_η − x_structure‖² (eq. 19 bands): per η averaged over the
    pairs, then per pair. Late switches (η near 1) leave only the fine levels to the texture."""
    df = metrics[metrics["eta"] != 0.0]  # η = 0 is the structure image itself: no difference
    res = sorted(df["resolution"].unique())  # coarse → fine, as the figure's rows
    headers = [level_header(r) for r in res]
    mean = df.pivot_table(index="eta", columns="resolution", values="share_vs_structure", aggfunc="mean")
    mean = mean.reindex(columns=res).sort_index(ascending=False).reset_index()
    mean.columns = ["eta", *headers]
    share_cols = [
        Column(h, h, f"share of level {h} in the difference from the pure structure image", _num(".3f"))
        for h in headers
    ]
    eta_col = Column("eta", "η", "switch time: the structure prompt while t ≥ ηT, the texture prompt after",
                     _num("g"))  # fmt: skip
    body = _html_table(mean, [eta_col, *share_cols])
    pairs = df.drop_duplicates("pair_id")[["pair_id", "structure", "texture"]]
    if len(pairs) > 1:  # one pair: the mean is that pair
        per = df.pivot_table(index=["pair_id", "eta"], columns="resolution", values="share_vs_structure")
        per = per.reindex(columns=res).reset_index()
        per.columns = ["pair_id", "eta", *headers]
        per = per.merge(pairs, on="pair_id").sort_values(["pair_id", "eta"], ascending=[True, False])
        per["pair"] = per["structure"] + " → " + per["texture"]
        pair_col = Column("pair", "pair (structure → texture)", "the prompt pair", str)
        body += "<p>Per pair:</p>" + _html_table(per, [pair_col, eta_col, *share_cols])
    n_pairs = len(pairs)
    weighting = str(df["weighting"].iloc[0]) if "weighting" in df and len(df) else ""
    note = (
        f"{n_pairs} pair(s), weighting {weighting}. Each row sums to 1 over the levels (coarse → fine, "
        "left to right); where the texture prompt takes over late (η near 1), the difference from "
        "the structure image sits in the fine levels."
    )
    title = f"Prompt composing: which levels follow the texture prompt — {model}" if model else "Prompt composing"
    return _fragment(title, body, note)


def guidance_table_html(table: pd.DataFrame, model: str = "") -> str:
    """Per guidance setting: accuracy, diversity, LSD and saturation, means over prompts and
    seeds with 95 % bootstrap intervals over prompts (``reschrom.guidance.summary``); rows on
    the accuracy–diversity Pareto front in bold."""
    from reschrom.guidance.summary import pareto_front, summarise

    s = summarise(table, n_boot=200, seed=0)
    oracle = bool(table["accuracy_colour"].isna().all())

    def ci(key: str, spec: str = ".2f") -> Callable[[object], str]:
        return lambda r: "–" if pd.isna(r[key]) else f"{r[key]:{spec}} [{r[key + '_lo']:{spec}}, {r[key + '_hi']:{spec}}]"

    s = s.assign(
        acc=s.apply(ci("accuracy"), axis=1), div=s.apply(ci("diversity"), axis=1),
        divc=s.apply(ci("diversity_coarse"), axis=1), lsd=s.apply(ci("lsd_db"), axis=1),
    )
    acc_meaning = ("share of samples in the prompt's concepts (the oracle's exact likelihood)" if oracle
                   else "mean of colour and shape accuracy read by the shapes detector")
    cols = [
        Column("method", "method", "guidance rule (docs/guidance.md)", str),
        Column("setting", "setting", "the rule's parameters besides its scale", str),
        Column("scale", "w", "guidance scale (fdg: w_high)", _num("g")),
        Column("acc", "accuracy", acc_meaning, str),
        Column("div", "diversity", "mean pairwise distance of a prompt's samples over the held-out data's", str),
        Column("divc", "coarse diversity", "the same on 4×4-pooled images", str),
        Column("lsd", "LSD (dB)", "log-spectral distance of the samples' mean RAPSD to the held-out data's", str),
        Column("pixel_std", "pixel std", "standard deviation of the clamped samples", _num(".3f")),
        Column("clip_fraction", "clipped", "share of values at or beyond ±1", _num(".3f")),
    ]
    body = _html_table(s, cols, best=list(pareto_front(s, "diversity")))
    nfe = int(table["nfe"].iloc[0]) if len(table) else 0
    note = (f"{int(s['n_prompts'].max()) if len(s) else 0} prompts, seeds {sorted(table['seed'].unique().tolist())}, "
            f"{nfe} denoiser evaluations per sample for every method; in brackets the 95 % bootstrap interval over "
            "prompts; bold: not beaten on both accuracy and diversity by another setting.")
    return _fragment(f"Guidance methods — {model}" if model else "Guidance methods", body, note)


# ---- the rule entry point -----------------------------------------------------------------------

TABLES = {"upscale": upscale_table_html, "agreement": agreement_table_html, "compose": compose_table_html,
          "guidance": guidance_table_html}


def write_report_table(kind: str, table: str | os.PathLike, out: str | os.PathLike, name: str = "") -> None:
    """Render the Parquet ``table`` as the HTML table ``kind`` (upscale | agreement | compose)
    and write it atomically to ``out``."""
    if kind not in TABLES:
        raise ValueError(f"table kind {kind!r} is unknown; allowed: {', '.join(TABLES)}")
    text = TABLES[kind](read_parquet(table), name)
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(text, encoding="utf-8")
