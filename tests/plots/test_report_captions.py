"""Every caption in report/ (and the landing page) renders to HTML without a single docutils system
message: the way ``snakemake --report`` renders them (Jinja with a ``snakemake`` object, then
reStructuredText), under the default, smoke and paper configurations.

A docutils message (``|…|`` read as a substitution, a broken table, an unknown link) is printed
during ``make run`` and drawn as a red error box inside the report; this test catches it in
seconds instead of after a 20-minute run."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import docutils.core
import docutils.nodes
import jinja2
import pytest

from reschrom.config import load_config_file, validate_config

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = sorted((REPO / "report").glob("*.rst"))
CONFIGS = {"default": [REPO / "config.yaml"], "smoke": [REPO / "config.yaml", REPO / "configs/smoke.yaml"],
           "paper": [REPO / "config.yaml", REPO / "configs/paper.yaml"]}
# what Snakemake appends to every caption before rendering (snakemake/report/__init__.py, rst_links)
RST_LINKS = "\n\n.. _Workflow: javascript:show_panel('workflow')\n.. _Statistics: javascript:show_panel('statistics')\n"


def _config(files: list[Path]) -> dict:
    from snakemake.utils import update_config

    config: dict = {}
    for f in files:
        update_config(config, load_config_file(f))
    return validate_config(config, REPO / "schemas/config.schema.yaml")


class _Wildcards(SimpleNamespace):
    """Any wildcard a caption names renders as its own name (``{model}``)."""

    def __getattr__(self, name: str) -> str:
        return "{" + name + "}"


def system_messages(rst: str) -> list[str]:
    """Every docutils system message that rendering ``rst`` to HTML reports at docutils' default
    level (warnings and errors: what ``snakemake --report`` prints and draws as an error box; info
    messages such as "target not referenced", which Snakemake's own appended links raise, are
    never reported)."""
    stream = io.StringIO()
    settings = {"report_level": 2, "halt_level": 5, "warning_stream": stream}
    doc = docutils.core.publish_doctree(rst, settings_overrides=settings)
    msgs = [n.astext().replace("\n", " ") for n in doc.findall(docutils.nodes.system_message)]
    docutils.core.publish_parts(rst, writer="html", settings_overrides=settings)
    return msgs + [line for line in stream.getvalue().splitlines() if line.strip()]


def render(path: Path, config: dict) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    snakemake = SimpleNamespace(config=config, wildcards=_Wildcards(), params=SimpleNamespace(), rule=path.stem)
    return env.from_string(path.read_text() + RST_LINKS).render(snakemake=snakemake, categories={}, files=[])


def test_the_checker_sees_a_substitution_error():
    """The pattern of the bug this test exists for: ``|x y|`` is an undefined substitution."""
    assert any("Undefined substitution" in m for m in system_messages("mean |energy ratio| in dB"))
    assert system_messages("mean \\|energy ratio\\| in dB, or ``|x|``") == []


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("caption", CAPTIONS, ids=[p.name for p in CAPTIONS])
def test_caption_renders_without_docutils_messages(caption: Path, config_name: str):
    rst = render(caption, _config(CONFIGS[config_name]))
    assert system_messages(rst) == [], caption.name
