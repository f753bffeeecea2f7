"""The artifact report: ``snakemake --report`` on a copy of the session's smoke run, for its theory
targets and three key tables (the oracle's agreement, the toy model's composing shares, the
upscaling metrics), checked as data and in a headless Chromium: the landing page read from the
top at three screen sizes, its links, and every figure.

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
from urllib.parse import quote

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
KEY_TABLES = "Key tables (§4.1–4.3)"  # the report category of TABLES (rules/report.smk)
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

# last in <body> of the landing page: once the app has rendered it and the layout has settled, log
# the viewport, the menu and the title and first paragraph (their boxes, and whether each is what
# the screen shows at three points of its first line); then click each of its links to a category
# or result and log whether the app went there
SHOW_LANDING = """<script>
(function go() {
  if (typeof app === "undefined" || !app) { setTimeout(go, 20); return; }
  let last = "", stable = 0;
  (function check() {
    const title = document.querySelector("h1.title");
    const para = title && title.parentElement.querySelector("p");
    const graph = document.querySelector("#rulegraph canvas, #rulegraph svg");
    if (!title || !para || !graph) { setTimeout(check, 20); return; }
    const box = (el) => { const r = el.getBoundingClientRect();
      return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
    const key = JSON.stringify([box(title), box(para), box(graph)]);
    stable = key === last ? stable + 1 : 0;
    last = key;
    if (stable < 10) { setTimeout(check, 50); return; }
    const shown = (el) => { const r = el.getBoundingClientRect(), y = r.top + Math.min(r.height / 2, 8);
      return [r.left + 1, (r.left + r.right) / 2, r.right - 1].map((x) => {
        const hit = document.elementFromPoint(x, y);
        return hit !== null && el.contains(hit); }); };
    console.log("RESCHROM_VIEW " + JSON.stringify({
      vw: innerWidth, vh: innerHeight, nav: box(document.querySelector("nav")),
      title: box(title), para: box(para), title_shown: shown(title), para_shown: shown(para),
    }));
    const links = Array.from(title.parentElement.querySelectorAll('a[href^="javascript:app.show"]'));
    (function click(i) {
      if (i === links.length) { console.log("RESCHROM_LINKS_DONE " + links.length); return; }
      const href = links[i].getAttribute("href");
      const m = href.match(/^javascript:app\\.(showCategory|showResultInfo)\\('(.*)'\\)$/);
      const want = m && decodeURIComponent(m[2]);
      const got = () => m && (m[1] === "showCategory" ? app.state.category : app.state.resultPath);
      links[i].click();
      (function wait(n) {
        if (got() !== want && n < 100) { setTimeout(() => wait(n + 1), 20); return; }
        console.log("RESCHROM_LINK " + JSON.stringify({href: href, want: want, got: got() || null}));
        click(i + 1);
      })(0);
    })(0);
  })();
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
        category, section = next(
            (c, sc) for c, sub in categories.items() for sc, ps in sub.items() if path in ps
        )
        assert category == KEY_TABLES and "§" in section, (path, category, section)
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


def test_report_landing_page_is_short_says_what_the_run_did_and_links_the_tables(report):
    _, html_path, _, categories = report
    desc = _js_string(html_path.read_text(), "workflow_desc")
    cfg = _smoke_config()
    body = re.sub(r"<style>.*?</style>", "", desc, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    assert "Resolution chromatography of diffusion models" in text
    assert "What this run did" in text
    # what was run, read from the config
    assert f"{len(SCHEDULES)} schedule(s) ({', '.join(SCHEDULES)})" in text, text
    assert f"{len(cfg['chromatography']['measure'])} model(s); agreement with the theory" in text, text
    residual = (cfg["upscale"].get("models") or {}).get("residual", "residual")  # the schema's default
    assert f"lowres + {residual}" in text, text
    trained = sorted(name for name, e in cfg["models"].items() if e.get("kind") == "trained")
    assert f"data {cfg['data']['name']} " in text and ", ".join(trained) in text, text
    # short: a few lines per stage, no table inline; the tables are a category of their own, linked
    assert len(text.split()) <= 220, f"the landing page has {len(text.split())} words"
    assert "<table" not in body and "reschrom-table" not in body
    hrefs = set(re.findall(r'href="(javascript:[^"]*)"', body))
    for path in TABLES:
        assert f"javascript:app.showResultInfo('{path}')" in hrefs, (path, hrefs)
    for name in categories:  # every section of the report, from its line
        assert f"javascript:app.showCategory('{quote(name)}')" in hrefs, (name, hrefs)
    assert KEY_TABLES in categories
    assert "system-message" not in desc, "the landing page has rst errors"


def _chromium(page, shot, tmp_path, size=(1400, 1000)) -> tuple[list[str], list[str]]:
    """Screenshot `page` in a window of `size` (width, height); return (console messages, error messages)."""
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--window-size={size[0]},{size[1]}",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}", page.as_uri()],
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


def _hooked(html: str) -> str:
    head = html.index("<head>") + len("<head>")
    return html[:head] + HOOK + html[head:]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("size", [(1366, 768), (1440, 900), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_report_landing_page_reads_from_the_top_in_chromium(report, tmp_path, size):
    """The landing page as a newcomer's window shows it: the title and the first paragraph on
    screen, right of the menu and not covered by it; and each of its links leads where it says.
    (Headless Chromium's window of `size` has a viewport of `size` less its window frame, as a
    desktop browser window has.)"""
    _, html_path, results, categories = report
    hooked = _hooked(html_path.read_text())
    page = tmp_path / "report.html"
    body = hooked.rindex("</body>")
    page.write_text(hooked[:body] + SHOW_LANDING + hooked[body:])
    shot = tmp_path / f"landing_{size[0]}x{size[1]}.png"
    messages, errors = _chromium(page, shot, tmp_path, size)
    assert not errors, errors
    screen = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    _assert_not_blank(screen, "landing page")
    views = [json.loads(m.split(" ", 1)[1]) for m in messages if m.startswith("RESCHROM_VIEW ")]
    assert len(views) == 1, messages
    v = views[0]
    assert v["vw"] == size[0] and 0.7 * size[1] < v["vh"] <= size[1], (size, v)
    for what in ("title", "para"):
        b = v[what]
        assert 0 <= b["top"] and b["bottom"] <= v["vh"], f"{size}: the {what} is not inside the viewport: {v}"
        beside = v["nav"]["right"] <= b["left"] and b["right"] <= v["vw"]
        assert beside, f"{size}: the {what} is under the menu or off screen: {v}"
        assert all(v[f"{what}_shown"]), f"{size}: the screen does not show the {what} at its first line: {v}"
    # its links: the key tables' category and every table, each to where it says
    links = [json.loads(m.split(" ", 1)[1]) for m in messages if m.startswith("RESCHROM_LINK ")]
    assert any(m.startswith("RESCHROM_LINKS_DONE ") for m in messages), messages
    assert all(link["got"] == link["want"] for link in links), links
    assert {link["want"] for link in links} >= set(TABLES) | {KEY_TABLES}, links


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_every_figure_in_chromium(report, tmp_path):
    _, html_path, results, _ = report
    hooked = _hooked(html_path.read_text())

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


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_builds_the_report_and_says_nothing_of_graphviz():
    """`make run` runs the workflow, then `snakemake --report`, which draws the rule graph itself:
    no graphviz step, so no suggestion to install it (`make rulegraph` alone needs `dot`)."""
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"snakemake --cores \S+ --report results/report\.html", out), out
    assert not re.search(r"graphviz|\bdot\b|rulegraph", out), out
