"""A job's log and its one-line error on the console.

Every script under ``scripts/`` starts with :func:`log_job`: the job's stderr (warnings,
progress, tracebacks) goes to its log file ``snakemake.log[0]``, and an exception that ends the
job writes its full traceback there followed by one line

    reschrom: <rule> (<wildcards>): <ExceptionType>: <message>

which is also written to the console that runs Snakemake (the process's original stderr), just
before Snakemake's own ``Error in rule …`` block. The line is the last line of the log too, so
Snakemake's ``--show-failed-logs`` (set in ``profiles/slurm``, where a job's stderr lands in a
SLURM log rather than on the console) ends on it as well.

Standard library only: it runs before the script imports anything heavy, so a failing import
(a missing package, a broken user module) is reported the same way.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any, TextIO

MAX_CHARS = 600
"""The longest one-line error; a longer message is cut (an ellipsis marks the cut; the log has it
in full)."""


def one_line_error(exc: BaseException, job: str = "") -> str:
    """``reschrom: <job>: <ExceptionType>: <message>`` on one line (whitespace runs collapsed,
    cut at :data:`MAX_CHARS`)."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1].rstrip() + "…"
    return f"reschrom: {job}: {text}" if job else f"reschrom: {text}"


def job_name(smk: Any) -> str:
    """``<rule>`` or ``<rule> (<wildcard>=<value>, …)`` of a Snakemake script's ``snakemake``."""
    rule = str(getattr(smk, "rule", "") or "job")
    wildcards = getattr(smk, "wildcards", None)
    items = list(wildcards.items()) if wildcards is not None and hasattr(wildcards, "items") else []
    return f"{rule} ({', '.join(f'{k}={v}' for k, v in items)})" if items else rule


def install(log: TextIO, console: TextIO, job: str) -> None:
    """Send stderr to ``log``; an uncaught exception writes its traceback and the one line to
    ``log`` and the one line to ``console``. (KeyboardInterrupt keeps Python's own handling.)"""
    sys.stderr = log

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        line = one_line_error(exc, job)
        try:
            log.write("".join(traceback.format_exception(kind, exc, tb)))
            log.write(line + "\n")
            log.flush()
        except (OSError, ValueError):  # a closed or unwritable log: the console still gets the line
            pass
        console.write(line + "\n")
        console.flush()

    sys.excepthook = hook


def log_job(smk: Any) -> None:
    """The first line of every script: stderr into ``smk.log[0]`` (the rule's ``log:``), and a
    failure reported as one line on the console (see the module docstring)."""
    console = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    log = open(smk.log[0], "w", buffering=1, encoding="utf-8")
    install(log, console, job_name(smk))
