"""reschrom.joblog: a job's stderr goes to its log; a failure is one line on the console (and the
log's last line), for every script of the workflow."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reschrom.joblog import MAX_CHARS, one_line_error

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_starts_with_log_job(script):
    """Data, training, measurement, plot and table jobs alike: the first statements are the
    import of log_job and log_job(snakemake), before any other import."""
    body = ast.parse(script.read_text()).body
    first, second = body[0], body[1]
    assert isinstance(first, ast.ImportFrom) and first.module == "reschrom.joblog", script.name
    assert [a.name for a in first.names] == ["log_job"], script.name
    call = second.value if isinstance(second, ast.Expr) else None
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "log_job", script.name
    assert [getattr(a, "id", None) for a in call.args] == ["snakemake"], script.name


def _run_job(tmp_path: Path, body: str, wildcards: dict | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``body`` as a script after log_job, with a stand-in for Snakemake's script object
    (log, rule, wildcards are all log_job reads)."""
    log = tmp_path / "job.log"
    src = textwrap.dedent(
        f"""
        import types
        from reschrom.joblog import log_job

        snakemake = types.SimpleNamespace(log=[{str(log)!r}], rule="plot_thing", wildcards={wildcards or {}!r})
        log_job(snakemake)
        """
    ) + textwrap.dedent(body)
    script = tmp_path / "job.py"
    script.write_text(src)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    return proc, log.read_text()


def test_failure_is_one_console_line_and_the_log_has_the_traceback(tmp_path):
    proc, log = _run_job(
        tmp_path,
        """
        import sys, warnings
        print("to stdout")
        warnings.warn("a warning for the log")
        def inner():
            raise ValueError("config key 'x': bad value\\n  second line")
        inner()
        """,
        wildcards={"model": "toy", "shard": "s0"},
    )
    assert proc.returncode == 1
    expected = "reschrom: plot_thing (model=toy, shard=s0): ValueError: config key 'x': bad value second line"
    assert proc.stderr.splitlines() == [expected], proc.stderr
    assert "to stdout" in proc.stdout
    lines = log.splitlines()
    assert lines[-1] == expected
    assert any(ln.startswith("Traceback") for ln in lines) and any("in inner" in ln for ln in lines), log
    assert "a warning for the log" in log


def test_success_writes_nothing_to_the_console(tmp_path):
    proc, log = _run_job(tmp_path, "import sys\nprint('progress', file=sys.stderr)\n")
    assert proc.returncode == 0 and proc.stderr == ""
    assert log == "progress\n"


def test_failing_import_is_reported_the_same_way(tmp_path):
    proc, log = _run_job(tmp_path, "import reschrom_no_such_module_here\n")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "reschrom: plot_thing: ModuleNotFoundError: No module named 'reschrom_no_such_module_here'"
    ]
    assert log.splitlines()[-1] == proc.stderr.strip()


def test_sys_exit_and_keyboard_interrupt_keep_pythons_handling(tmp_path):
    proc, _ = _run_job(tmp_path, "import sys\nsys.exit(3)\n")
    assert proc.returncode == 3 and "reschrom:" not in proc.stderr
    proc, log = _run_job(tmp_path, "raise KeyboardInterrupt\n")
    assert proc.returncode != 0 and "reschrom:" not in proc.stderr + log


def test_one_line_error_collapses_and_cuts():
    assert one_line_error(RuntimeError("a\n\tb  c"), "r") == "reschrom: r: RuntimeError: a b c"
    assert one_line_error(RuntimeError(), "r") == "reschrom: r: RuntimeError"
    long = one_line_error(ValueError("x" * 5000), "r")
    assert "\n" not in long and long.endswith("…")
    assert len(long) == len("reschrom: r: ") + MAX_CHARS
