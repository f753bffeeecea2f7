"""The artifact report: ``snakemake --report`` on a copy of the session's smoke run, for its theory
targets and three key tables (the oracle's agreement, the toy model's composing shares, the
upscaling metrics), checked as data and in a headless Chromium.

Snakemake 9 writes a single-page React app; every result sits in a ``var results = {...}`` JSON
blob with its caption, labels and the file itself as a base64 ``data_uri``, and the app shows a
figure when one clicks the eye button of its result. The browser test opens the real report,
clicks that button for each figure (a script injected into a copy of the page), screenshots it,
and compares the pixels where the ``<img>`` sits with the PNG on disk.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from workflow_utils import REPO, SMOKE, copy_run, snakemake

pytestmark = pytest.mark.workflow

SMOKE_CONFIG = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())
SCHEDULES = SMOKE_CONFIG["theory"]["schedules"]
FIGURES = [
    "results/figures/time_adjustment_linear.png",
    "results/figures/chromatography_theory_linear.png",
    "results/figures/chromatography_atlas.png",
]
TABLES = [
    "results/tables/agreement_oracle.html",
    "results/tables/compose_toy.html",
    "results/tables/upscale_shapes.html",
]
TARGETS = ["results/theory/linear.parquet", *FIGURES, *TABLES]
# what a caption must cite: a paper figure, equation, theorem or section
PAPER_REF = re.compile(r"Fig\.|Figure|eq\.|Theorem|§")

CHROMIUM = next((p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
    "--window-size=1400,1000",
    "--virtual-time-budget=15000",
]

# first in <head>: report console.error, uncaught errors, failed resources, rejected promises
HOOK = """<script>
(function () {
  const tag = "RESCHROM_ERROR ";
  const orig = console.error.bind(console);
  console.error = (...a) => { console.log(tag + a.map(String).join(" ")); orig(...a); };
  window.addEventListener("error", (e) => console.log(tag + (e.message ||
      ("failed to load " + (e.target && (e.target.src || e.target.href))))), true);
  window.addEventListener("unhandledrejection", (e) => console.log(tag + "unhandled rejection: " + e.reason));
})();
</script>"""

# last in <body>: open the result's info (as a click on it in the results list does), click its
# eye button, wait for the <img> to load, and log where it sits
SHOW_FIGURE = """<script>
(function go() {
  if (typeof app === "undefined" || !app) { setTimeout(go, 20); return; }
  const path = %s;
  app.showResultInfo(path);
  (function click() {
    const btn = document.querySelector('a[iconname="eye"]');
    if (!btn) { setTimeout(click, 20); return; }
    btn.click();
    let last = "", stable = 0;
    (function check() {
      const img = Array.from(document.images).find((i) => i.getAttribute("src") === results[path].data_uri);
      if (!img || !img.complete) { setTimeout(check, 20); return; }
      // styles are generated after render: wait until the layout has settled
      const r = img.getBoundingClientRect();
      const key = JSON.stringify([r.x, r.y, r.width, r.height]);
      stable = key === last ? stable + 1 : 0;
      last = key;
      if (stable < 10) { setTimeout(check, 50); return; }
      const div = document.createElement("div");
      div.innerHTML = results[path].caption || "";
      const norm = (s) => s.replace(/\\s+/g, " ").trim();
      const cap = norm(div.textContent).slice(0, 60);
      const pane = img.parentElement.parentElement.getBoundingClientRect();
      console.log("RESCHROM_FIGURE " + JSON.stringify({
        path: path, w: img.naturalWidth, h: img.naturalHeight,
        x: r.x, y: r.y, dw: r.width, dh: r.height, pane_x: pane.x,
        caption_shown: cap.length > 0 && norm(document.body.innerText).includes(cap),
      }));
    })();
  })();
})();
</script>"""

# last in <body> of the landing page: wait for the app to render it, then log its inline tables
SHOW_LANDING = """<script>
(function go() {
  if (typeof app === "undefined" || !app) { setTimeout(go, 20); return; }
  (function check(n) {
    const tables = document.querySelectorAll(".reschrom-table table");
    if (tables.length === 0 && n < 200) { setTimeout(() => check(n + 1), 50); return; }
    const shown = Array.from(tables).filter((t) => t.getBoundingClientRect().width > 0).length;
    console.log("RESCHROM_LANDING " + JSON.stringify({
      tables: tables.length, shown: shown,
      did: document.body.innerText.includes("What this run did"),
    }));
  })(0);
})();
</script>"""

_CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(.*)", source: ')


@pytest.fixture(scope="module")
def report(smoke_run, tmp_path_factory):
    """(workdir, report path, the report's results JSON, its categories) of a copy of the smoke run."""
    wd = copy_run(smoke_run.wd, tmp_path_factory.mktemp("report") / "wf")
    proc = snakemake(wd, *TARGETS, *SMOKE, "--report", "results/report.html")
    # docutils reports rst problems of the landing page and captions on stderr, and goes on
    assert not re.search(r"\((WARNING|ERROR|SEVERE)/\d\)", proc.stdout + proc.stderr), proc.stderr[-3000:]
    html = (wd / "results/report.html").read_text()
    return wd, wd / "results/report.html", _js_object(html, "results"), _js_object(html, "categories")


def _js_object(html: str, name: str) -> dict:
    m = re.search(r"var " + name + r" = (\{.*?\});\s*</script>", html, re.S)
    assert m, f"no `var {name}` in the report"
    return json.loads(m.group(1))


def _png(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    rgba = np.asarray(img.convert("RGBA"), dtype=float)
    # composite over white, as the report's white content pane shows it
    return rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)


def _ink(rgb: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels that are not (near) white."""
    rows, cols = np.nonzero((rgb < 245).any(axis=-1))
    if rows.size == 0:
        return rgb[:0, :0]
    return rgb[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _assert_not_blank(rgb: np.ndarray, what: str) -> None:
    assert rgb.size > 0, what
    assert rgb.std() > 10 and (rgb.max() - rgb.min()) > 100, f"{what} looks blank (std {rgb.std():.1f})"


def _js_string(html: str, name: str) -> str:
    m = re.search(r"\b" + name + r' = ("(?:[^"\\]|\\.)*");', html, re.S)
    assert m, f"no `{name} = \"...\"` in the report"
    return json.loads(m.group(1))


def _smoke_config() -> dict:
    return yaml.safe_load((REPO / "configs/smoke.yaml").read_text())


def test_report_embeds_every_figure_with_caption_category_labels(report):
    wd, _, results, categories = report
    assert set(results) == set(FIGURES) | set(TABLES)
    in_categories = {p for sub in categories.values() for paths in sub.values() for p in paths}
    assert in_categories == set(FIGURES) | set(TABLES)
    for path, entry in results.items():
        if path not in FIGURES:
            continue
        assert entry["mime_type"] == "image/png", path
        header, _, b64 = entry["data_uri"].partition(";base64,")
        assert header.startswith("data:image/png"), path
        data = base64.b64decode(b64)
        assert data == (wd / path).read_bytes(), f"{path}: embedded image differs from the file"
        _assert_not_blank(_png(data), path)
        assert PAPER_REF.search(entry["caption"]), f"{path}: caption cites no figure/equation/section"
        assert "figure" in entry["labels"] and {"schedule", "model", "dataset"} & set(entry["labels"]), path
        category = next(c for c, sub in categories.items() for ps in sub.values() if path in ps)
        assert "§" in category or "Fig." in category, f"{path}: category {category!r} names no paper section"


def test_report_has_each_table_as_a_result_with_caption_from_the_config(report):
    wd, _, results, categories = report
    cfg = _smoke_config()
    headers = {
        "agreement": ["level", "peak t/T measured", "peak t/T theory", "difference"],
        "compose": ["η", *[f"{r}×{r}" for r in (1, 2, 4, 8)]],
        "upscale": ["variant", "LSD (dB)", "residual noise", "diversity", "clipped"],
    }
    for path in TABLES:
        entry = results[path]
        assert entry["mime_type"] == "text/html", path
        header, _, b64 = entry["data_uri"].partition(";base64,")
        assert header.startswith("data:text/html") and "charset=utf8" in header, path
        data = base64.b64decode(b64)
        assert data == (wd / path).read_bytes(), f"{path}: embedded table differs from the file"
        text = data.decode()
        assert text.count("<table>") >= 1 and "<td>" in text, path
        kind = path.split("/")[-1].split("_")[0]
        for h in headers[kind]:
            assert f">{h}</th>" in text, (path, h)
        assert PAPER_REF.search(entry["caption"]), path
        assert "figure" in entry["labels"] and {"model", "dataset"} & set(entry["labels"]), path
        category = next(c for c, sub in categories.items() for ps in sub.values() if path in ps)
        assert "§" in category, (path, category)
    # one row per variant, and captions that read the config
    up = results["results/tables/upscale_shapes.html"]
    variants = cfg["upscale"].get("variants")
    if variants:
        table = base64.b64decode(up["data_uri"].partition(";base64,")[2]).decode()
        assert table.count("<tr") == len(variants) + 1
        assert ", ".join(variants) in up["caption"]
    etas = ", ".join(str(float(e)) for e in cfg["compose"]["etas"])
    assert "η ∈ {" + etas + "}" in results["results/tables/compose_toy.html"]["caption"]
    steps = cfg["chromatography"]["overrides"]["oracle"].get("num_inference_steps", cfg["chromatography"]["num_inference_steps"])
    assert f"{steps} steps" in results["results/tables/agreement_oracle.html"]["caption"]


def test_report_landing_page_says_what_the_run_did_and_shows_the_tables(report):
    _, html_path, _, _ = report
    desc = _js_string(html_path.read_text(), "workflow_desc")
    cfg = _smoke_config()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", desc, flags=re.S)))
    assert "Resolution chromatography of diffusion models" in text
    assert "What this run did" in text and "Key tables" in text
    # what was run, read from the config
    assert f"{len(SCHEDULES)} noise schedule(s) ({', '.join(SCHEDULES)})" in text
    n_prompts = len(cfg["chromatography"]["overrides"]["oracle"]["prompts"])
    assert re.search(r"oracle \(oracle\): " + str(n_prompts) + r" prompt\(s\), \d+ steps", text), text[:3000]
    assert f"at {cfg['theory']['n_t']} time points" in text
    residual = (cfg["upscale"].get("models") or {}).get("residual", "residual")  # the schema's default
    assert f"residual model {residual} trained on {cfg['data']['name']}" in text, text[:3000]
    assert f"figures at {cfg['figures']['dpi']} dpi" in text
    # the tables of the report's targets inline, in paper order
    assert desc.count('<div class="reschrom-table">') == len(TABLES)
    titles = ["Measured vs theoretical chromatography — oracle", "Upscaling metrics — shapes",
              "Prompt composing: which levels follow the texture prompt — toy"]  # fmt: skip
    where = [text.find(t) for t in titles]
    assert -1 not in where and where == sorted(where), where
    assert "system-message" not in desc, "the landing page has rst errors"


def _chromium(page, shot, tmp_path) -> tuple[list[str], list[str]]:
    """Screenshot `page`; return (console messages, error messages)."""
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shot.exists(), f"chromium wrote no screenshot ({proc.returncode}):\n{proc.stderr[-3000:]}"
    messages = [m.group(1) for m in map(_CONSOLE.search, proc.stderr.splitlines()) if m]
    errors = [
        m
        for m in messages
        if m.startswith("RESCHROM_ERROR") or re.search(r"Uncaught|Failed to load|Refused to", m)
    ]
    return messages, errors


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_every_figure_in_chromium(report, tmp_path):
    _, html_path, results, _ = report
    html = html_path.read_text()
    head = html.index("<head>") + len("<head>")
    hooked = html[:head] + HOOK + html[head:]

    # the landing page: what the run did, and the tables inline
    page = tmp_path / "report.html"
    body = hooked.rindex("</body>")
    page.write_text(hooked[:body] + SHOW_LANDING + hooked[body:])
    messages, errors = _chromium(page, tmp_path / "landing.png", tmp_path)
    assert not errors, errors
    _assert_not_blank(np.asarray(Image.open(tmp_path / "landing.png").convert("RGB"), dtype=float), "landing")
    landing = [json.loads(m.split(" ", 1)[1]) for m in messages if m.startswith("RESCHROM_LANDING ")]
    assert len(landing) == 1, messages
    assert landing[0]["did"] and landing[0]["tables"] >= len(TABLES), landing
    assert landing[0]["shown"] == landing[0]["tables"], landing

    # every figure, shown through its eye button
    for i, path in enumerate(sorted(p for p in results if p in FIGURES)):
        body = hooked.rindex("</body>")
        page = tmp_path / f"figure{i}.html"
        page.write_text(hooked[:body] + SHOW_FIGURE % json.dumps(path) + hooked[body:])
        shot = tmp_path / f"figure{i}.png"
        messages, errors = _chromium(page, shot, tmp_path)
        assert not errors, (path, errors)
        shown = [json.loads(m.split(" ", 1)[1]) for m in messages if m.startswith("RESCHROM_FIGURE ")]
        assert len(shown) == 1, (path, messages)
        info = shown[0]
        png = _png((html_path.parent.parent / path).read_bytes())
        assert (info["h"], info["w"]) == png.shape[:2], (path, info)
        assert info["caption_shown"], (path, "caption not shown beside the figure")
        # the figure on screen: the non-white pixels of the content pane (right of the navbar).
        # Headless Chromium may lay the page out in a smaller viewport than it captures, so find
        # the figure in the screenshot rather than trusting getBoundingClientRect().
        screen = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
        pane = screen[:, int(np.ceil(info["pane_x"])) + 1 :]
        crop = _ink(pane)
        _assert_not_blank(crop, f"{path} on screen")
        if (round(info["dw"]), round(info["dh"])) == (info["w"], info["h"]):
            # shown at natural size: the pixels must be the file's
            ref = _ink(png)
            assert abs(crop.shape[0] - ref.shape[0]) <= 1 and abs(crop.shape[1] - ref.shape[1]) <= 1, (
                path,
                crop.shape,
                ref.shape,
            )
            h, w = min(crop.shape[0], ref.shape[0]), min(crop.shape[1], ref.shape[1])
            diff = np.abs(crop[:h, :w] - ref[:h, :w]).mean()
            assert diff < 8, f"{path}: screenshot differs from the PNG by {diff:.1f}/255 on average"
