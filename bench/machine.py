"""The machine and the code a run measured: hardware, kernel, Open vSwitch, git commit, and
how busy the machine was (other labs' bridges, load average) as a hint of how noisy it was."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, run


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _first_line(*argv: str) -> str:
    try:
        return run(*argv, check=False, timeout=30).stdout.splitlines()[0].strip()
    except (IndexError, OSError):
        return "unknown"


def busy() -> dict:
    """How busy the machine is right now: load average and the bridges of other labs."""
    bridges = run("ovs-vsctl", "--timeout=10", "list-br", check=False).stdout.split()
    others = [b for b in bridges if not b.startswith(("vr-bn", "mlf-bnch", "bnch-"))]
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "other_bridges": len(others)}


def describe() -> dict:
    """Everything the results need to be read against."""
    commit = run("git", "-C", str(REPO), "rev-parse", "HEAD", check=False).stdout.strip()
    dirty = bool(run("git", "-C", str(REPO), "status", "--porcelain", check=False).stdout.strip())
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit, "git_dirty": dirty,
        "nproc": os.cpu_count(), "memory_gib": _memory_gib(), "cpu_model": _cpu_model(),
        "kernel": platform.release(), "ovs_version": _first_line("ovs-vsctl", "--version"),
        "iperf3_version": _first_line("iperf3", "--version"),
        "python": platform.python_version(),
    }
