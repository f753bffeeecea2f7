"""Every figure the workflow writes is readable: no two texts overlap, and no text lies on another
plot's axes, at the dpi of the default config (110) and of the smoke config (40).

Each figure function is rendered on small synthetic inputs shaped like the real artifacts (long
prompts, the default config's 5 η and 7 levels, the upscaling grid's 4 rows). The check hooks
``Text.draw``, so it sees exactly the texts that are drawn (titles, axis labels, row labels, tick
labels, legend and colorbar texts, suptitles), and compares their window extents pairwise.

The last tests check start-up: the modules the model-free jobs import pull in neither torch nor
diffusers.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image

from reschrom.compose.pairs import eta_label, pair_id
from reschrom.io import write_parquet
from reschrom.measure.aggregate import aggregate_chromatography
from reschrom.measure.prompts import prompt_id
from reschrom.plots import chromatography as plots_chromatography
from reschrom.plots import compose as plots_compose
from reschrom.plots import theory as plots_theory
from reschrom.plots import training as plots_training
from reschrom.plots import upscale as plots_upscale
from reschrom.theory.resolution import level_resolutions, theory_table
from reschrom.theory.schedules import DEFAULT_SCHEDULES, build_schedule

REPO = Path(__file__).resolve().parents[2]
DPIS = [40, 110]  # configs/smoke.yaml and config.yaml: figures.dpi
PROMPTS = [  # as long as the default config's, and longer
    "a red circle with stripes on a dark background",
    "a plain blue square on a light background",
    "a teddy bear playing the guitar on a wooden stage under warm, colourful spot lights at night",
    "grass",
]
PAIRS = [
    ("a plain red circle on a dark background", "a red circle with stripes on a dark background"),
    ("a plain blue square on a light background", "a blue square with checks on a light background"),
    ("a plain green triangle on a dark background", "a yellow triangle with dots on a light background"),
]
ETAS = [1.0, 0.8, 0.6, 0.4, 0.2]
PLOT_MODULES = [plots_theory, plots_chromatography, plots_compose, plots_training, plots_upscale]


# ---- the check ------------------------------------------------------------------------------


def _drawn_texts(fig, dpi: int) -> list[tuple[Text, object]]:
    """(text, window extent) of every non-empty text drawn when ``fig`` renders at ``dpi``."""
    drawn: list[tuple[Text, object]] = []
    orig = Text.draw

    def draw(self, renderer):
        orig(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append((self, self.get_window_extent(renderer)))

    Text.draw = draw
    try:
        fig.set_dpi(dpi)
        fig.canvas.draw()
    finally:
        Text.draw = orig
    return drawn


def _intersect(a, b, tol: float = 0.5) -> bool:
    """Boxes share an area wider and taller than ``tol`` pixels (touching edges do not count)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > tol and h > tol


def collisions(fig, dpi: int) -> list[str]:
    """Pairs of drawn texts whose boxes overlap, and texts that lie on another axes' plot area."""
    drawn = _drawn_texts(fig, dpi)
    problems = [
        f"{t1.get_text()!r} overlaps {t2.get_text()!r}"
        for (t1, b1), (t2, b2) in itertools.combinations(drawn, 2)
        if _intersect(b1, b2)
    ]
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and ax.axison]
    renderer = fig.canvas.get_renderer()
    for t, box in drawn:
        for ax in axes:
            if ax is t.axes:
                continue  # an axes' own texts (legend, annotations) may sit on its area
            if _intersect(box, ax.get_window_extent(renderer)):
                problems.append(f"{t.get_text()!r} lies on another plot's area ({ax.get_label() or ax})")
    return problems


@pytest.fixture
def figures(monkeypatch):
    """Each figure a plot function saves (the real file is written too), with its dpi."""
    saved: list[tuple[object, int, Path]] = []

    def capture(fig, path, dpi=120):
        saved.append((fig, dpi, Path(path)))
        fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png")

    for mod in PLOT_MODULES:
        monkeypatch.setattr(mod, "save_figure", capture)
    yield saved
    for fig, _, _ in saved:
        plt.close(fig)


def _check(figures, dpi: int, n: int = 1) -> None:
    assert len(figures) == n
    for fig, saved_dpi, path in figures:
        assert saved_dpi == dpi
        assert path.stat().st_size > 1000
        problems = collisions(fig, dpi)
        assert not problems, f"{path.name} at dpi {dpi}:\n" + "\n".join(problems)


# ---- synthetic artifacts --------------------------------------------------------------------


def _theory(tmp_path: Path, name: str = "linear", resolution: int = 64, n_t: int = 60) -> Path:
    p = tmp_path / f"theory_{name}_{resolution}.parquet"
    write_parquet(theory_table(build_schedule(name, DEFAULT_SCHEDULES[name]), resolution, n_t), p)
    return p


def _dump(tmp_path: Path, prompt: str, resolution: int = 16, steps: int = 12, seed: int = 0) -> Path:
    """A guidance dump (the contract of results/guidance/{model}/{prompt_id}.parquet)."""
    rng = np.random.default_rng(seed)
    res = level_resolutions(resolution)
    t = np.linspace(1.0, 0.0, steps, endpoint=False)
    rows = []
    for sample in range(2):
        for step, tf in enumerate(t):
            ab = float(np.cos(tf * np.pi / 2) ** 2) + 1e-4
            for m, r in enumerate(res):
                e = float(rng.uniform(0.1, 1.0))
                rows.append(dict(prompt_id=prompt_id(prompt), prompt=prompt, seed=0, sample=sample, step=step,
                                 t_frac=tf, m=m, resolution=int(r), energy_guidance=e, energy_cond=4 * e,
                                 energy_uncond=3 * e, alpha_bar=ab))  # fmt: skip
    p = tmp_path / f"{prompt_id(prompt)}.parquet"
    write_parquet(pd.DataFrame(rows), p)
    return p


def _png(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _compose(tmp_path: Path, etas: list[float], pairs=PAIRS) -> tuple[Path, Path]:
    """results/compose/{model}/: per-pair η images and the metrics table."""
    rows = []
    res = level_resolutions(16)
    for i, (s, x) in enumerate(pairs):
        pid = pair_id(s, x)
        for eta in [*etas, 0.0, 1.0]:
            _png(tmp_path / pid / f"eta_{eta_label(eta)}.png", i * 100 + int(eta * 10))
        for eta in etas:
            share = np.random.default_rng(i).dirichlet(np.ones(len(res)))
            for m, r in enumerate(res):
                rows.append(dict(model="toy", pair_id=pid, structure=s, texture=x, weighting="heaviside", eta=eta,
                                 seed=0, m=m, resolution=int(r), energy_vs_structure=share[m],
                                 energy_vs_texture=1 - share[m], share_vs_structure=share[m],
                                 share_vs_texture=share[m]))  # fmt: skip
    metrics = tmp_path / "metrics.parquet"
    write_parquet(pd.DataFrame(rows), metrics)
    return metrics, _theory(tmp_path, "squaredcos_cap_v2", 16)


# ---- the figures ----------------------------------------------------------------------------


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("resolution", [16, 64, 1024])
def test_theory_figures(tmp_path, figures, dpi, resolution):
    table = _theory(tmp_path, "scaled_linear", resolution)
    plots_theory.plot_chromatography_theory(table, tmp_path / "c.png", dpi=dpi)
    plots_theory.plot_time_adjustment(table, tmp_path / "t.png", dpi=dpi)
    _check(figures, dpi, 2)


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("names", [list(DEFAULT_SCHEDULES), ["linear", "cosine", "flow_matching"], ["edm"]])
def test_atlas(tmp_path, figures, dpi, names):
    plots_theory.plot_chromatography_atlas([_theory(tmp_path, n) for n in names], tmp_path / "a.png", dpi=dpi)
    _check(figures, dpi)


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("n_prompts", [1, 4])
def test_measured_chromatography(tmp_path, figures, dpi, n_prompts):
    dumps = [_dump(tmp_path, p, seed=i) for i, p in enumerate(PROMPTS[:n_prompts])]
    table = tmp_path / "chrom.parquet"
    write_parquet(aggregate_chromatography(dumps), table)
    plots_chromatography.plot_measured_chromatography(table, tmp_path / "m.png", model="toy_flow", dpi=dpi)
    plots_chromatography.plot_prompt_chromatography(dumps, tmp_path / "p.png", model="toy_flow", dpi=dpi)
    _check(figures, dpi, 2)


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("etas", [ETAS, [1.0, 0.5]])
def test_compose_figures(tmp_path, figures, dpi, etas):
    metrics, theory = _compose(tmp_path, etas)
    plots_compose.plot_compose_grid(metrics, theory, tmp_path, etas, tmp_path / "g.png", dpi=dpi)
    plots_compose.plot_compose_pairs(metrics, tmp_path, etas, tmp_path / "p.png", dpi=dpi)
    _check(figures, dpi, 2)


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("n_snapshots", [3, 6])
def test_x0_spectra_figure(tmp_path, figures, dpi, n_snapshots):
    from safetensors.numpy import save_file

    T, steps, K = 1000, 10, 9
    t = np.linspace(T - 1, 0, steps).round()
    rng = np.random.default_rng(0)
    rows = [dict(model="oracle", step=s, t=t[s], t_frac=t[s] / (T - 1), k=k, power=float(rng.uniform(0.01, 1)),
                 n_samples=16) for s in range(steps) for k in range(K)]  # fmt: skip
    write_parquet(pd.DataFrame(rows), tmp_path / "s.parquet")
    snap = {
        "x_t": rng.normal(size=(n_snapshots, 3, 16, 16)).astype(np.float32),
        "x0": rng.normal(size=(n_snapshots, 3, 16, 16)).astype(np.float32),
        "steps": np.linspace(0, steps - 1, n_snapshots).astype(np.int64),
        "timesteps": t.astype(np.int64),
    }
    save_file(snap, str(tmp_path / "s.safetensors"))
    plots_compose.plot_x0_spectra(tmp_path / "s.parquet", tmp_path / "s.safetensors", tmp_path / "x.png", dpi=dpi)
    _check(figures, dpi)


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("rows", [["nearest", "no_time_adjustment", "no_intensity_rescaling", "full"],
                                  ["full", "multilevel"]])  # fmt: skip
def test_upscale_figures(tmp_path, figures, dpi, rows):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    variants = ["full", "no_time_adjustment", "no_intensity_rescaling", "neither", "nearest", "bicubic", "multilevel"]
    paths = {}
    for v in rows:
        paths[v] = tmp_path / f"{v}.safetensors"
        save_file({"images": rng.integers(0, 255, (8, 3, 16, 16), dtype=np.uint8)}, str(paths[v]))
    plots_upscale.plot_upscale_grid(paths, tmp_path / "g.png", columns=8, dpi=dpi)
    spec = [dict(variant=v, k=k, power=float(rng.uniform(0.1, 1) / (k + 1))) for v in [*variants, "data"]
            for k in range(9)]  # fmt: skip
    write_parquet(pd.DataFrame(spec), tmp_path / "spectra.parquet")
    write_parquet(pd.DataFrame({"variant": variants, "lsd_db": rng.uniform(0, 5, len(variants))}),
                  tmp_path / "metrics.parquet")  # fmt: skip
    plots_upscale.plot_upscale_spectra(tmp_path / "spectra.parquet", tmp_path / "metrics.parquet",
                                       tmp_path / "s.png", dpi=dpi)  # fmt: skip
    _check(figures, dpi, 2)


def test_upscale_images_read_without_torch_match_upscale_load_images(tmp_path):
    """reschrom.io.read_images (the figures' reader, no torch) reads samples as
    reschrom.sampling.upscale.load_images does (uint8 and float files), and the one image grid
    (reschrom.io.image_grid) draws both alike."""
    from safetensors.numpy import save_file

    from reschrom.io import image_grid, read_images
    from reschrom.sampling.upscale import load_images

    rng = np.random.default_rng(0)
    save_file({"images": rng.integers(0, 255, (5, 3, 8, 8), dtype=np.uint8)}, str(tmp_path / "u.safetensors"))
    save_file({"images": rng.normal(size=(5, 1, 8, 8)).astype(np.float32)}, str(tmp_path / "f.safetensors"))
    for name in ("u", "f"):
        ref = load_images(tmp_path / f"{name}.safetensors", limit=4)
        x = read_images(tmp_path / f"{name}.safetensors", limit=4)
        np.testing.assert_array_equal(x, ref.numpy())
        np.testing.assert_array_equal(image_grid(x, 3, pad=2), image_grid(ref, 3, pad=2))


@pytest.mark.parametrize("dpi", DPIS)
@pytest.mark.parametrize("flow", [False, True])
def test_training_loss_figure(tmp_path, figures, dpi, flow):
    steps = np.arange(1, 301)
    log = pd.DataFrame({"step": steps, "loss": 1.0 / np.sqrt(steps), "lr": 1e-3, "images_per_s": 250.0})
    write_parquet(log, tmp_path / "training_log.parquet")
    if flow:
        (tmp_path / plots_training.FLOW_MODEL_FILE).write_text(json.dumps({"class": plots_training.FLOW_CLASS_NAME}))
    plots_training.plot_training_log(tmp_path, tmp_path / "l.png", title="toy_flow — shapes", dpi=dpi)
    _check(figures, dpi)
    label = figures[0][0].axes[0].get_ylabel()
    assert label == ("velocity MSE" if flow else "ε-prediction MSE")


@pytest.mark.parametrize("dpi", DPIS)
def test_training_loss_panels_one_per_model(tmp_path, figures, dpi):
    """One job draws every model's curve: a panel per model, titled by its name, the flow
    folder's panel labelled with the velocity MSE; an empty mapping is an error naming the file."""
    steps = np.arange(1, 51)
    dirs = {}
    for i, name in enumerate(["lowres", "residual", "toy_flow"]):
        d = tmp_path / name
        d.mkdir()
        log = pd.DataFrame({"step": steps, "loss": (i + 1.0) / np.sqrt(steps), "lr": 1e-3, "images_per_s": 100.0})
        write_parquet(log, d / "training_log.parquet")
        if name == "toy_flow":
            (d / plots_training.FLOW_MODEL_FILE).write_text(json.dumps({"class": plots_training.FLOW_CLASS_NAME}))
        dirs[name] = d
    plots_training.plot_training_logs(dirs, tmp_path / "loss.png", dataset="shapes", dpi=dpi)
    _check(figures, dpi)
    axes = [ax for ax in figures[0][0].axes if ax.get_visible()]
    assert [ax.get_title().split(" — ")[0] for ax in axes] == list(dirs)
    assert [ax.get_ylabel() for ax in axes] == ["ε-prediction MSE", "ε-prediction MSE", "velocity MSE"]
    # each panel plots its own model's log: the running means differ by the factor written above
    firsts = [ax.get_lines()[0].get_ydata()[0] for ax in axes]
    np.testing.assert_allclose(firsts, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="none.png"):
        plots_training.plot_training_logs({}, tmp_path / "none.png")


def test_flow_constants_match_flow_module():
    from reschrom.models import flow

    assert (plots_training.FLOW_MODEL_FILE, plots_training.FLOW_CLASS_NAME) == (flow.MODEL_FILE, flow.CLASS_NAME)


def test_the_check_finds_overlaps():
    """The check itself: overlapping rotated row labels and a title over the axis label above."""
    fig, axes = plt.subplots(2, 1, figsize=(3, 1.2))
    axes[0].set_xlabel("t / T (noise → data)")
    axes[1].set_title("η = 0.8")
    for ax in axes:
        ax.set_ylabel("a plain red circle on a dark background\n→ a red circle with stripes")
    problems = collisions(fig, 110)
    plt.close(fig)
    assert any("η = 0.8" in p for p in problems)
    assert any("overlaps" in p and "a plain red circle" in p for p in problems)


# ---- start-up: no torch in the model-free jobs -------------------------------------------------

MODEL_FREE_SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("plot_*.py")) + [
    "theory_table.py",
    "aggregate_chromatography.py",
    "report_table.py",
    "compose_metrics.py",
]


def _script_imports(name: str) -> list[str]:
    """The ``from reschrom.X import …`` / ``import …`` statements of a workflow script."""
    tree = ast.parse((REPO / "scripts" / name).read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            out.append(f"import {', '.join(a.name for a in node.names)}")
    return out


def test_model_free_scripts_import_no_torch():
    """Every plotting, theory and aggregation script (and the plot modules, imported whole)
    starts without torch or diffusers; a DDPM schedule is built without them too."""
    lines = sorted({line for name in MODEL_FREE_SCRIPTS for line in _script_imports(name)})
    assert any("reschrom.plots" in line for line in lines)
    code = "\n".join(
        [
            "import sys",
            *lines,
            "import reschrom, reschrom.plots, reschrom.plots.common, reschrom.plots.theory",
            "import reschrom.plots.chromatography, reschrom.plots.categories, reschrom.plots.compose",
            "import reschrom.plots.upscale, reschrom.plots.training, reschrom.plots.tables, reschrom.plots.design",
            "import reschrom.theory, reschrom.theory.resolution, reschrom.measure, reschrom.measure.prompts",
            "import reschrom.measure.guidance, reschrom.measure.aggregate, reschrom.measure.agreement",
            "import reschrom.measure.measurement, reschrom.compose, reschrom.compose.pairs, reschrom.design",
            "from reschrom.theory.schedules import build_schedule",
            "build_schedule('s', {'type': 'ddpm', 'beta_schedule': 'scaled_linear', 'beta_start': 0.00085,"
            " 'beta_end': 0.012, 'rescale_betas_zero_snr': True})",
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'seaborn', 'scipy.stats')"
            " if m in sys.modules)",
            "assert not heavy, heavy",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


# ---- the report's tables ------------------------------------------------------------------------


def test_report_tables(tmp_path):
    from reschrom.plots.tables import write_report_table

    variants = ["full", "no_time_adjustment", "nearest"]
    up = pd.DataFrame({"variant": variants, "n_samples": 8, "lsd_db": [1.5, 2.5, 0.5], "residual_noise": 0.1,
                       "diversity": 1.0, "diversity_coarse": 0.9, "clip_fraction": 0.01, "energy_ratio_m0": 1.1,
                       "energy_ratio_m1": 0.9, "pixel_mean": 0.0, "pixel_std": 0.5, "data_pixel_mean": 0.0,
                       "data_pixel_std": 0.5, "n_data": 16})  # fmt: skip
    write_parquet(up, tmp_path / "up.parquet")
    write_report_table("upscale", tmp_path / "up.parquet", tmp_path / "up.html", "shapes")
    text = (tmp_path / "up.html").read_text()
    assert text.count("<tr") == len(variants) + 1 and "Upscaling metrics — shapes" in text
    assert '<tr class="best"><td>nearest</td>' in text  # the smallest LSD in bold
    assert ">E ratio m=1</th>" in text and "16 held-out images" in text

    res = level_resolutions(16)
    ag = pd.DataFrame({"model": "toy", "m": range(len(res)), "resolution": res, "peak_t_measured": 0.5,
                       "peak_t_theory": np.linspace(0, 0.9, len(res)), "peak_t_diff": 0.1,
                       "spearman_peak_order": np.nan, "jsd_mean": 0.2, "jsd_max": 0.4, "n_t": 10})  # fmt: skip
    write_parquet(ag, tmp_path / "ag.parquet")
    write_report_table("agreement", tmp_path / "ag.parquet", tmp_path / "ag.html", "toy")
    text = (tmp_path / "ag.html").read_text()
    assert text.count("<tr") == len(res) + 1 and text.index("<td>1×1</td>") < text.index("<td>16×16</td>")
    assert "undefined (a constant peak order)" in text

    metrics, _ = _compose(tmp_path, [1.0, 0.5, 0.0])
    write_report_table("compose", metrics, tmp_path / "co.html", "toy")
    text = (tmp_path / "co.html").read_text()
    assert text.count("<table>") == 2  # the mean over pairs, then per pair
    assert "<td>0</td>" not in text  # η = 0 (the structure image itself) is left out
    assert f"{len(PAIRS)} pair(s)" in text
    with pytest.raises(ValueError, match="table kind 'nope' is unknown"):
        write_report_table("nope", metrics, tmp_path / "x.html")
