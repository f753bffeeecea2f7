"""Every fenced code block of README.md and docs/*.md runs as written: a newcomer pastes them.

Each block is checked by its language and by an optional marker, an HTML comment on the last
non-blank line before the fence (CONTRIBUTING.md, "Code blocks in README.md and docs/"):

* ``python``: run in a fresh interpreter, in an empty temporary folder, offline; the block must
  define every name it uses (tiny offline models: the oracle, random tensors).
* ``bash``: run with ``bash -e`` in a temporary copy of the workflow (``.venv`` linked to this
  interpreter's environment). ``<!-- example: dry-run -->``: the same, with ``-n`` given to every
  ``snakemake`` and ``make`` command (the DAG is planned from the block's own config files; no
  job runs, nothing is downloaded).
* ``yaml``: parses; ``snakemake``: ``snakefmt --check`` with the project's settings.
* ``text``: not code, nothing to check.
* ``<!-- example: module my_module:load -->`` on a python block: the block is the file
  ``my_module.py`` of a ``kind: module`` folder; it is written beside ``tests/helpers/doc_examples/*``
  (the names it imports, and the ``weights.safetensors`` they write), loaded by
  ``reschrom.models.module.load_module_model`` from another working directory and measured for a few
  steps (``measure_guidance``).
* ``<!-- example: needs-gpu -->``, ``needs-hub``, ``needs-cluster``, ``needs-data``: what the
  block needs is not here; python is compiled and its imports are imported, bash goes through
  ``bash -n``.

In every bash block, each YAML file it writes with a heredoc (``cat > x.yaml <<'YAML'``) must
be a valid config merged over ``config.yaml`` (``reschrom.config.check_files``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from workflow_utils import copy_workflow

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FIXTURES = Path(__file__).resolve().parents[1] / "helpers" / "doc_examples"
CHECK_ONLY = ("needs-gpu", "needs-hub", "needs-cluster", "needs-data")
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash",
             "yaml": "yaml", "yml": "yaml", "snakemake": "snakemake", "text": "text"}
TIMEOUT = 120

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[a-z-]+)(?:\s+(?P<arg>\S+))?\s*-->\s*$")
_HEREDOC = re.compile(r"cat\s*>\s*(?P<file>\S+\.ya?ml)\s*<<-?\s*['\"]?(?P<tag>\w+)['\"]?\s*\n(?P<body>.*?)\n\s*(?P=tag)\s*$",
                      re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language (info string), marker and text."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    marker: str | None
    arg: str | None
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, dedented by their fence's indentation (blocks inside
    list items), with the marker comment on the last non-blank line before the fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{i + 1}: code fence never closed")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = _MARKER.match(lines[k]) if k >= 0 else None
        blocks.append(
            Block(path, i + 1, m["info"].strip().split(" ")[0].lower(), mk["kind"] if mk else None,
                  mk["arg"] if mk else None, "\n".join(body) + "\n")
        )
        i = j + 1
    return blocks


BLOCKS = [b for p in DOC_FILES for b in extract_blocks(p)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["PYTHONWARNINGS"] = "default"
    return env


def _run(cmd: list[str], cwd: Path, what: Block, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a block in its own process group; on timeout the whole group is killed (a block that
    starts the workflow must not leave its jobs running)."""
    popen = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
        raise AssertionError(
            f"{what.id} ({what.language}, marker {what.marker}) ran over {timeout} s (killed): mark it "
            f"(CONTRIBUTING.md) or make it faster\n{what.code}\n--- stderr\n{err[-3000:]}"
        ) from None
    proc = subprocess.CompletedProcess(cmd, popen.returncode, out, err)
    if proc.returncode != 0:
        raise AssertionError(
            f"{what.id} ({what.language}, marker {what.marker}) failed as written ({proc.returncode}):\n"
            f"{what.code}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
        )
    return proc


def _workflow_copy(dest: Path) -> Path:
    """A copy of the workflow with the Makefile and pyproject.toml, and ``.venv`` linked to the
    environment running the tests (the blocks call ``.venv/bin/...``)."""
    wd = copy_workflow(dest)
    for f in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / f, wd / f)
    (wd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return wd


_DRY = re.compile(r"(?P<pre>(?:^|[\s;&|(]))(?P<cmd>(?:[\w./-]*/)?(?:snakemake|make))(?=\s|$)", re.M)


def dry_run_script(code: str) -> str:
    """The block with ``-n`` after every ``snakemake``/``make`` command word (not in comments)."""
    out = []
    for line in code.splitlines():
        body, sep, comment = line.partition(" #")
        out.append(_DRY.sub(lambda m: f"{m['pre']}{m['cmd']} -n", body) + sep + comment)
    return "\n".join(out) + "\n"


def _check_heredoc_configs(block: Block, tmp: Path) -> int:
    """Every ``cat > x.yaml <<TAG`` of a bash block is a valid config over config.yaml."""
    from reschrom.config import ConfigError, check_files

    n = 0
    for h in _HEREDOC.finditer(block.code):
        f = tmp / Path(h["file"]).name
        f.write_text(textwrap.dedent(h["body"]) + "\n")
        try:
            check_files([f], [], REPO)
        except ConfigError as e:
            raise AssertionError(f"{block.id}: the config {h['file']} it writes is invalid: {e}") from None
        n += 1
    return n


def _imports_only(code: str) -> str:
    tree = ast.parse(code)
    return "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)) + "\n"


MODULE_CHECK = """
import json, sys
from reschrom.models.module import load_module_model
from reschrom.measure import measure_guidance
folder, factory = sys.argv[1], sys.argv[2]
m = load_module_model("mine", {"kind": "module", "path": folder, "factory": factory})
df, _ = measure_guidance(m, ["digit 3", "digit 5"], model="mine", seeds=[0], num_samples=2,
                         guidance_scale=3.0, num_inference_steps=6)
print(json.dumps({"resolution": m.resolution, "rows": len(df), "levels": sorted(df["resolution"].unique().tolist()),
                  "defined": bool(df["defined"].all())}))
"""


def _check_module(block: Block, tmp: Path) -> None:
    assert block.arg and ":" in block.arg, f"{block.id}: write the marker as 'module <module>:<function>'"
    modname, _ = block.arg.split(":")
    folder = tmp / "model"
    folder.mkdir()
    (folder / f"{modname}.py").write_text(block.code)
    for f in FIXTURES.glob("*.py"):
        shutil.copy2(f, folder / f.name)
    sys.path.insert(0, str(FIXTURES))
    try:
        from my_network import write_weights
    finally:
        sys.path.remove(str(FIXTURES))
    write_weights(folder / "weights.safetensors")
    elsewhere = tmp / "elsewhere"  # the job's working directory is not the model's folder
    elsewhere.mkdir()
    proc = _run([sys.executable, "-c", MODULE_CHECK, str(folder), block.arg], elsewhere, block)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # 2 prompts × 2 samples × 6 steps × the levels R, R/2, … of the model's resolution R
    assert got["levels"][-1] == got["resolution"] and got["rows"] == 2 * 2 * 6 * len(got["levels"]), got
    assert got["defined"], f"{block.id}: the class-conditional example has steps without a CFG term"


def _marks(b: Block) -> list:
    if b.marker == "dry-run" or (b.language == "bash" and b.marker is None):
        return [pytest.mark.workflow]
    if b.language == "python" and b.marker not in CHECK_ONLY:
        return [pytest.mark.slow]
    return []


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id, marks=_marks(b)) for b in BLOCKS])
def test_doc_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    lang = LANGUAGES.get(block.language)
    assert lang is not None, (
        f"{block.id}: code block with language {block.language!r}: label it "
        f"({', '.join(sorted(set(LANGUAGES)))}) so that tests/project/test_docs_examples.py can check it"
    )
    known = (None, "dry-run", "module", *CHECK_ONLY)
    assert block.marker in known, f"{block.id}: unknown example marker {block.marker!r}; known: {known[1:]}"
    if lang == "text":
        return
    if lang == "yaml":
        yaml.safe_load(block.code)
        return
    if lang == "snakemake":
        (tmp_path / "block.smk").write_text(block.code)
        _run([str(Path(sys.executable).parent / "snakefmt"), "--config", str(REPO / "pyproject.toml"),
              "--check", "block.smk"], tmp_path, block)
        return
    if lang == "python":
        if block.marker == "module":
            _check_module(block, tmp_path)
            return
        code = block.code
        if block.marker in CHECK_ONLY:
            compile(code, block.id, "exec")
            code = _imports_only(code)
        (tmp_path / "block.py").write_text(code)
        _run([sys.executable, "block.py"], tmp_path, block)
        return
    assert block.marker != "module", f"{block.id}: 'module' marks a python block"
    _check_heredoc_configs(block, tmp_path)
    if block.marker in CHECK_ONLY:
        (tmp_path / "block.sh").write_text(block.code)
        _run(["bash", "-n", "block.sh"], tmp_path, block)
        return
    wd = _workflow_copy(tmp_path / "wf")
    script = dry_run_script(block.code) if block.marker == "dry-run" else block.code
    (wd / "block.sh").write_text("set -euo pipefail\n" + script)
    _run(["bash", "block.sh"], wd, block)


# --------------------------------------------------------------------------------------
# the checker itself
# --------------------------------------------------------------------------------------


def test_every_doc_file_has_blocks_and_the_readme_its_examples() -> None:
    """The extraction sees the examples (a parser that found nothing would pass): the README's two
    commands and its probe example, and the docs pages' python, ``kind: module`` and dry-run blocks."""
    readme = [b for b in BLOCKS if b.path.name == "README.md"]
    assert any(b.marker == "dry-run" and "make test" in b.code for b in readme)
    assert any("GuidanceProbe" in b.code for b in readme if b.language == "python")
    assert sum(b.language == "python" for b in BLOCKS) >= 3
    assert any(b.marker == "module" for b in BLOCKS) and sum(b.marker == "dry-run" for b in BLOCKS) >= 2


def test_extract_blocks_reads_markers_languages_and_indented_fences(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "text\n\n<!-- example: needs-gpu -->\n```python\nimport torch\n```\n\n"
        "- item\n\n  ```snakemake\n  rule a:\n      output:\n          \"x\",\n  ```\n\n"
        "```bash\necho hi  # a comment\n```\n"
    )
    a, b, c = extract_blocks(md)
    assert (a.language, a.marker, a.code, a.line) == ("python", "needs-gpu", "import torch\n", 4)
    assert (b.language, b.marker, b.code.splitlines()[0]) == ("snakemake", None, "rule a:")
    assert (c.language, c.marker) == ("bash", None)


def test_dry_run_script_adds_n_to_snakemake_and_make_only() -> None:
    code = (
        "make run    # runs the workflow, make it so\n"
        ".venv/bin/snakemake --cores 2 --configfile mine.yaml\n"
        "cat > x.yaml <<'YAML'\nsnakemake: no\nYAML\n"
        "pip install snakemake-executor-plugin-slurm && snakemake --report r.html\n"
    )
    out = dry_run_script(code).splitlines()
    assert out[0] == "make -n run    # runs the workflow, make it so"
    assert out[1] == ".venv/bin/snakemake -n --cores 2 --configfile mine.yaml"
    assert out[3] == "snakemake: no"
    assert out[5] == "pip install snakemake-executor-plugin-slurm && snakemake -n --report r.html"


def test_heredoc_configs_are_validated(tmp_path: Path) -> None:
    bad = Block(REPO / "README.md", 1, "bash", "needs-data", None,
                "cat > mine.yaml <<'YAML'\ntheory: {n_t: -5}\nYAML\n.venv/bin/snakemake --configfile mine.yaml\n")
    with pytest.raises(AssertionError, match=r"mine.yaml it writes is invalid: .*theory.n_t"):
        _check_heredoc_configs(bad, tmp_path)
    good = Block(REPO / "README.md", 1, "bash", None, None, bad.code.replace("-5", "50"))
    assert _check_heredoc_configs(good, tmp_path) == 1


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie awaiting its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_block_over_time_is_killed_with_its_children(tmp_path: Path) -> None:
    """A block that runs too long (e.g. an unmarked `make run`) leaves no process behind."""
    block = Block(REPO / "README.md", 1, "bash", None, None, "sleep 60 & echo $! > child.pid; wait\n")
    (tmp_path / "block.sh").write_text(block.code)
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="ran over 2 s"):
        _run(["bash", "block.sh"], tmp_path, block, timeout=2)
    assert time.monotonic() - t0 < 30, "the test waited for the block's background job"
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the block's background job outlived the block"


def test_a_needs_gpu_block_is_compiled_and_its_imports_run(tmp_path: Path) -> None:
    code = "import json\nfrom pathlib import Path\npipe = load_from_hub().to('cuda')\n"
    test_doc_block_runs_as_written(Block(REPO / "README.md", 1, "python", "needs-gpu", None, code), tmp_path)
    for bad, what in (("import no_such_module_xyz\n", "No module named 'no_such_module_xyz'"),
                      ("import json\npipe = (\n", "SyntaxError|was never closed")):
        with pytest.raises((AssertionError, SyntaxError), match=what):
            test_doc_block_runs_as_written(Block(REPO / "README.md", 1, "python", "needs-hub", None, bad), tmp_path)


# --------------------------------------------------------------------------------------
# the pages themselves: a short README, links that resolve, each thing written once
# --------------------------------------------------------------------------------------

README_MAX_LINES = 160
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced blocks."""
    lines, out, fence = path.read_text(encoding="utf-8").splitlines(), [], None
    for i, ln in enumerate(lines, 1):
        m = _FENCE.match(ln)
        if fence is None and m:
            fence = m["fence"]
        elif fence is not None and ln.strip().startswith(fence):
            fence = None
        elif fence is None:
            out.append((i, ln))
    return out


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` … for repeats."""
    seen: dict[str, int] = {}
    for _, ln in _prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", ln)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m[1].lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        seen.setdefault(f"{slug}-{n}" if n else slug, 1)
    return set(seen)


def broken_links(path: Path) -> list[str]:
    """Relative links and images of a Markdown file (outside code) whose file, or heading anchor
    in a Markdown target, does not exist."""
    bad = []
    for i, ln in _prose_lines(path):
        for m in _LINK.finditer(_INLINE_CODE.sub("", ln)):
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(REPO)}:{i}: {target}"
            if not dest.exists():
                bad.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest):
                bad.append(f"{where} (no heading #{anchor} in {dest.relative_to(REPO)})")
    return bad


def test_readme_is_short() -> None:
    n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (at most {README_MAX_LINES}): move the detail to a docs/ page and link it"
    )


def test_relative_links_resolve() -> None:
    bad = [b for p in DOC_FILES for b in broken_links(p)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_readme_links_every_docs_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {(REPO / m["target"].partition("#")[0]).resolve() for m in _LINK.finditer(readme)}
    unlinked = [p.name for p in DOC_FILES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md links no docs page {unlinked}"


def test_each_thing_is_written_once() -> None:
    """No line of prose or table row (60 characters or more) stands in two places of README.md
    and docs/*.md: a fact is written once and linked (issue 21: the results table was repeated)."""
    where: dict[str, list[str]] = {}
    for p in DOC_FILES:
        for i, ln in _prose_lines(p):
            text = " ".join(ln.split())
            if len(text) >= 60:
                where.setdefault(text, []).append(f"{p.relative_to(REPO)}:{i}")
    twice = {t: w for t, w in where.items() if len(w) > 1}
    assert not twice, "written more than once:\n" + "\n".join(f"{w}: {t[:100]}" for t, w in twice.items())


def test_link_checker_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    docs = REPO / "docs"
    md = docs / f"_link_check_{os.getpid()}.md"
    try:
        md.write_text(
            "# A page\n\n## Two things (§4.2)\n\n[ok](#two-things-42) [ok](../README.md) ![ok](rulegraph.svg)\n"
            "[gone](no_such_page.md) [bad anchor](../README.md#no-such-heading) `[code](not_checked.md)`\n"
            "[web](https://example.org/x)\n\n```text\n[in a block](nowhere.md)\n```\n"
        )
        bad = broken_links(md)
    finally:
        md.unlink()
    assert len(bad) == 2, bad
    assert "no_such_page.md (no such file)" in bad[0] and "no heading #no-such-heading in README.md" in bad[1]

