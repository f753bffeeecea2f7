"""The artifact report: ``snakemake --report`` for the smoke theory targets, checked as data and in a
headless Chromium.

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

from workflow_utils import copy_workflow, snakemake

pytestmark = pytest.mark.workflow

SCHEDULES = ["linear"]
FIGURES = [
    "results/figures/time_adjustment_linear.png",
    "results/figures/chromatography_theory_linear.png",
    "results/figures/chromatography_atlas.png",
]
TARGETS = ["results/theory/linear.parquet", *FIGURES]
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

_CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(.*)", source: ')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(workdir, report path, the report's results JSON) after running the smoke theory targets."""
    wd = copy_workflow(tmp_path_factory.mktemp("report") / "wf")
    (wd / "one.yaml").write_text(yaml.safe_dump({"theory": {"schedules": SCHEDULES}}))
    cfg = ["--configfile", "configs/smoke.yaml", "one.yaml"]
    snakemake(wd, *TARGETS, "--cores", "2", *cfg)
    snakemake(wd, *TARGETS, *cfg, "--report", "results/report.html")
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


def test_report_embeds_every_figure_with_caption_category_labels(report):
    wd, _, results, categories = report
    assert set(results) == set(FIGURES)
    in_categories = {p for sub in categories.values() for paths in sub.values() for p in paths}
    assert in_categories == set(FIGURES)
    for path, entry in results.items():
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

    # the landing page
    page = tmp_path / "report.html"
    page.write_text(hooked)
    messages, errors = _chromium(page, tmp_path / "landing.png", tmp_path)
    assert not errors, errors
    _assert_not_blank(np.asarray(Image.open(tmp_path / "landing.png").convert("RGB"), dtype=float), "landing")

    # every figure, shown through its eye button
    for i, path in enumerate(sorted(results)):
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
