"""Helpers to run the Snakemake workflow in a temporary copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COPY_ITEMS = ["Snakefile", "rules", "scripts", "schemas", "envs", "report", "configs", "config.yaml", "src", "profiles", "data"]


USER_MODELS = REPO / "tests" / "helpers" / "user_models"


def broken_module_config(tmp: Path, extra: str = "") -> str:
    """A ``kind: module`` model ``bad`` whose ``eps`` drops a column (a wrong shape at run time):
    writes its module under ``tmp/user`` and returns the config YAML (``extra`` appended) that
    measures it on one prompt, ``'digit 3'``, for 4 steps."""
    user = tmp / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "broken.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(USER_MODELS)!r})\n"
        "import edm_classes\n\n"
        "def load(device=None, dtype=None):\n"
        "    m = edm_classes.load(device=device, dtype=dtype)\n"
        "    good = m.eps\n"
        "    m.eps = lambda x, a, c: good(x, a, c)[..., :-1]  # drops a column: wrong shape\n"
        "    return m\n"
    )
    return (
        "models:\n"
        f"  bad: {{kind: module, path: '{user}', factory: 'broken:load'}}\n"
        "chromatography:\n"
        "  measure: [bad]\n"
        "  overrides:\n"
        "    bad: {prompts: ['digit 3'], num_inference_steps: 4, num_samples: 1}\n"
    ) + extra


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not results, not the venv) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in COPY_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    return dest


def _env_and_cmd(args) -> tuple[dict, list[str]]:
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env, [os.path.join(bindir, "snakemake"), *args]


def _check(proc: subprocess.CompletedProcess, args) -> None:
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``snakemake`` from this interpreter's environment in ``workdir``."""
    env, cmd = _env_and_cmd(args)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        _check(proc, args)
    return proc


class BackgroundSnakemake:
    """``snakemake *args`` started now in ``workdir`` (its own process group, output to files);
    ``wait()`` returns it as ``snakemake()`` would. Lets the test session run the smoke workflow on
    the second core while the unit tests run on the first."""

    def __init__(self, workdir: Path, *args: str):
        self.workdir, self.args = workdir, args
        env, cmd = _env_and_cmd(args)
        self._out = open(workdir.parent / f"{workdir.name}.stdout", "w+")
        self._err = open(workdir.parent / f"{workdir.name}.stderr", "w+")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self._out, stderr=self._err, start_new_session=True
        )
        self.elapsed: float | None = None  # wall seconds, once it has ended
        threading.Thread(target=self._clock, daemon=True).start()

    def _clock(self) -> None:
        self.proc.wait()
        self.elapsed = time.monotonic() - self.t0

    def wait(self, timeout: int = 1500, check: bool = True) -> subprocess.CompletedProcess:
        try:
            rc = self.proc.wait(timeout=max(1.0, timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.elapsed is None:
            self.elapsed = time.monotonic() - self.t0
        self._out.seek(0)
        self._err.seek(0)
        proc = subprocess.CompletedProcess(self.proc.args, rc, self._out.read(), self._err.read())
        if check:
            _check(proc, self.args)
        return proc

    def kill(self) -> None:
        """Stop the run and its jobs (a session that ends before it is used)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


@dataclass
class PlannedJob:
    """One job of a ``snakemake -n`` plan: its rule, outputs, wildcards and reason."""

    rule: str
    outputs: list[str] = field(default_factory=list)
    wildcards: str = ""
    reason: str = ""
    resources: dict[str, str] = field(default_factory=dict)


_RULE_LINE = re.compile(r"^(?:local)?rule (\S+):$")


def plan(workdir: Path, *args: str, **kwargs) -> list[PlannedJob]:
    """The jobs ``snakemake -n *args`` would run (empty when there is nothing to be done).

    Pass targets, ``--configfile``s and e.g. ``--rerun-triggers mtime params input code``;
    the target rule ``all`` (no outputs) is left out.
    """
    proc = snakemake(workdir, "-n", *args, **kwargs)
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        m = _RULE_LINE.match(line)
        if m:
            current = PlannedJob(m.group(1))
            jobs.append(current)
            continue
        if current is None:
            continue
        if not line.startswith("    "):
            current = None
            continue
        key, _, val = line.strip().partition(": ")
        if key == "output":
            current.outputs = val.split(", ")
        elif key in ("wildcards", "reason"):
            setattr(current, key, val)
        elif key == "resources":
            current.resources = dict(kv.split("=", 1) for kv in val.split(", ") if "=" in kv)
    return [j for j in jobs if j.rule != "all"]


def planned_rules(workdir: Path, *args: str, **kwargs) -> Counter:
    """How many jobs of each rule ``snakemake -n *args`` plans, e.g. ``{'theory_table': 1}``."""
    return Counter(j.rule for j in plan(workdir, *args, **kwargs))


# ---- the shared smoke run (tests/conftest.py: smoke_run, smoke_copy) ------------------------

SMOKE = ("--configfile", "configs/smoke.yaml")
# files whose bytes legitimately differ between runs (timings, logs)
# (training logs and loss figures carry the measured images/s)
VOLATILE = ("results/logs/", "results/benchmarks/", "results/report.html", "training_log.parquet",
            "results/figures/loss_")


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (relative), but Snakemake's own state and Python's byte-code cache."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if ".snakemake" not in p.parts and "__pycache__" not in p.parts
    }


def tree_hashes(root: Path, prefix: str = "results/") -> dict[str, str]:
    """sha256 of every result file below ``root/prefix`` but the volatile ones and checkpoints."""
    import hashlib

    out = {}
    for p in sorted((root / "results").rglob("*")):
        rel = p.relative_to(root).as_posix()
        if (
            p.is_file()
            and rel.startswith(prefix)
            and not any(v in rel for v in VOLATILE)
            and "/checkpoints/" not in rel
        ):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a finished run's workdir (results, .snakemake metadata, mtimes): Snakemake plans
    nothing in it, and a test may change it freely (cheap next to running the workflow again)."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "locks"))
    return dest
