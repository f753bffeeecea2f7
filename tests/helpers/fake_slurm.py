"""A fake SLURM for tests: ``sbatch``, ``srun``, ``squeue``, ``sacct``, ``scontrol``, ``sinfo``,
``sacctmgr``, ``sshare`` and ``scancel`` as small Python executables in a temporary bin folder.

Each call is appended to ``<state>/calls.jsonl`` as ``{"tool": ..., "argv": [...]}``.
``sbatch --parsable`` prints a job id and runs the ``--wrap`` command (or the script it reads
from stdin) in the background, in the ``-D`` folder, with the SLURM variables a job would see;
the job's state (PENDING → RUNNING → COMPLETED / FAILED) lives in ``<state>/jobs/<id>.json`` and
``sacct``/``squeue`` answer from there in the formats snakemake-executor-plugin-slurm parses
(``--parsable2 --format=JobIdRaw,State`` and ``--format=%i|%T``), holding the answer until a job
has ended (at most 30 s) so that the plugin's growing poll interval (+10 s per idle check) does
not dominate a seconds-scale test. ``srun`` drops its options and runs the command in place.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

TOOLS = ["sbatch", "srun", "squeue", "sacct", "scontrol", "sinfo", "sacctmgr", "sshare", "scancel"]

ACCOUNT = "testacct"
PARTITIONS = ["cpu*", "gpu"]  # sinfo -o %P: the default partition carries a '*'

_TOOL_SOURCE = r'''
import fcntl, json, os, subprocess, sys, time
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_STATE"])
JOBS = STATE / "jobs"
TOOL = os.path.basename(sys.argv[0])
ARGS = sys.argv[1:]


def record(tool, argv):
    with open(STATE / "calls.jsonl", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps({"tool": tool, "argv": argv}) + "\n")


def opt(name, short=None):
    """Value of --name=V, --name V or -s V (last one wins), else None."""
    val = None
    for i, a in enumerate(ARGS):
        if a.startswith(name + "="):
            val = a.split("=", 1)[1]
        elif a == name or (short and a == short):
            if i + 1 < len(ARGS):
                val = ARGS[i + 1]
    return val


def write_job(jid, **fields):
    path = JOBS / f"{jid}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def jobs():
    out = []
    for p in sorted(JOBS.glob("*.json"), key=lambda p: int(p.stem)):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            pass
    return out


def next_jobid():
    with open(STATE / "counter", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = int(fh.read().strip() or "1000") + 1
        fh.seek(0)
        fh.truncate()
        fh.write(str(n))
    return n


def sbatch():
    if "--wrap" in ARGS or any(a.startswith("--wrap=") for a in ARGS):
        script = "#!/bin/sh\n" + opt("--wrap") + "\n"
    else:
        script = sys.stdin.read()
    jobid = next_jobid()
    workdir = opt("-D") or opt("--chdir") or os.getcwd()
    log = (opt("--output") or opt("-o") or f"slurm-{jobid}.out").replace("%j", str(jobid))
    gpus = opt("--gpus") or opt("--gres")
    (STATE / "scripts").mkdir(exist_ok=True)
    script_path = STATE / "scripts" / f"{jobid}.sh"
    script_path.write_text(script)
    write_job(jobid, jobid=jobid, name=opt("--job-name") or opt("-J") or "", state="PENDING",
              comment=opt("--comment") or "", gpus=gpus, workdir=workdir, log=log)
    env = dict(os.environ)
    env.update({"SLURM_JOB_ID": str(jobid), "SLURM_JOBID": str(jobid),
                "SLURM_CPUS_PER_TASK": opt("--cpus-per-task") or "1"})
    if gpus:
        env["SLURM_GPUS"] = gpus.split(":")[-1]
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        subprocess.Popen([sys.executable, __file__, "__runjob__", str(jobid), str(script_path)],
                         cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    print(jobid)


def runjob(jobid, script_path):
    write_job(jobid, state="RUNNING", start=time.time())
    rc = subprocess.call(["/bin/sh", script_path])
    write_job(jobid, state="COMPLETED" if rc == 0 else "FAILED", rc=rc, end=time.time())


def srun():
    # drop srun's own options (all given as -n1 / --opt=value by the jobstep plugin)
    i = 0
    while i < len(ARGS) and ARGS[i].startswith("-"):
        i += 1
    cmd = ARGS[i:]
    if not cmd:
        sys.exit("srun: no command")
    os.execvp(cmd[0], cmd)


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def status_lines(fmt, wait=30.0):
    """Print the jobs of run --name. Like a scheduler's event stream, wait (up to `wait` s) until
    some job has ended since the last query, so the plugin's polling interval never backs off."""
    name = opt("--name")
    deadline = time.time() + wait
    while True:
        mine = [j for j in jobs() if name is None or j.get("name") == name]
        news = [j for j in mine if j["state"] in TERMINAL and not j.get("reported")]
        running = [j for j in mine if j["state"] not in TERMINAL]
        if news or not running or time.time() > deadline:
            break
        time.sleep(0.2)
    for j in news:
        write_job(j["jobid"], reported=True)
    for j in mine:
        print(fmt.format(**j))


def main():
    record(TOOL, ARGS)
    if TOOL == "sbatch":
        sbatch()
    elif TOOL == "srun":
        srun()
    elif TOOL == "sacct":
        fmt = (opt("--format") or opt("-o") or "").lower()
        if "jobidraw" in fmt:
            status_lines("{jobid}|{state}")
        elif "account" in fmt:
            print(ACCOUNT)
        elif "reason" in fmt or "nodelist" in fmt:
            print("")
    elif TOOL == "squeue":
        status_lines("{jobid}|{state}")
    elif TOOL == "scontrol":
        if ARGS[:2] == ["show", "config"]:
            print("MaxArraySize            = 1001")
            print("MinJobAge               = 300 sec")
        elif ARGS[:2] == ["show", "partition"]:
            print("PartitionName=cpu Default=YES MaxTime=1-00:00:00 MaxNodes=1 TotalCPUs=64 TotalNodes=1")
            print("PartitionName=gpu MaxTime=1-00:00:00 MaxNodes=1 TotalCPUs=64 TotalNodes=1 TRES=cpu=64,gres/gpu=8")
        else:
            sys.exit(f"scontrol: unsupported {ARGS}")
    elif TOOL == "sinfo":
        print("PARTITION")
        print("\n".join(PARTITIONS))
    elif TOOL in ("sacctmgr", "sshare"):
        print(ACCOUNT)
    elif TOOL == "scancel":
        pass


if len(sys.argv) > 1 and sys.argv[1] == "__runjob__":
    runjob(int(sys.argv[2]), sys.argv[3])
else:
    main()
'''


def install(bindir: Path, state: Path) -> dict[str, str]:
    """Write the fake tools to ``bindir`` and return the environment variables that use them."""
    bindir.mkdir(parents=True, exist_ok=True)
    (state / "jobs").mkdir(parents=True, exist_ok=True)
    tool = bindir / "_fake_slurm.py"
    src = f"#!{sys.executable}\nACCOUNT = {ACCOUNT!r}\nPARTITIONS = {PARTITIONS!r}\n" + _TOOL_SOURCE
    tool.write_text(src)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    for name in TOOLS:
        link = bindir / name
        if not link.exists():
            link.symlink_to(tool.name)
    return {
        "PATH": str(bindir) + os.pathsep + os.environ.get("PATH", ""),
        "FAKE_SLURM_STATE": str(state),
    }


def calls(state: Path, tool: str | None = None) -> list[list[str]]:
    """The recorded argument lists, optionally of one tool only."""
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["argv"] for r in rows if tool is None or r["tool"] == tool]


def jobs(state: Path) -> list[dict]:
    """Every submitted job's record (jobid, name, comment, state, gpus, rc, …)."""
    return [json.loads(p.read_text()) for p in sorted((state / "jobs").glob("*.json"))]
