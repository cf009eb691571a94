"""Lab scale: bring-up and tear-down time of generated labs, their flows, memory and file
descriptors, a reachability sample, and (on one size) the controller's reconciliation.

For each size (VMs on compute nodes, 5 networks, VMs spread round-robin), `mirrorlab up`
is timed until it returns (it returns once every VM reaches the next VM of its network, pinging
around a ring, see `mirrorlab.netlab`), with the time each bring-up phase began. Then, from
outside the lab process:

  reachability  a sample of VM pairs pinged through the driver (`Lab.exec`, one ping each):
                pairs of the same network must answer, pairs of different networks must not;
  flows         the flows of all vRouters (`ovs-ofctl -O OpenFlow13 dump-flows`);
  memory        resident memory (VmRSS) of the controller, the lab process and the lab's
                ovs-vswitchd, and how much less memory the machine has available (MemAvailable)
                than before `up`: the whole lab, its VMs' shells and the kernel's share included;
  files         open file descriptors of those processes, against their limits;
  controller    the share of a core the controller uses on the idle lab (its flow audit);

and `mirrorlab down` is timed. On the lab of `controller_size` VMs the controller benchmark
(`bench.reconcile`) runs too: the full reconciliation after a restart.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

from bench import reconcile
from bench.common import (BenchLab, cpu_seconds, log, make_topology, ovs_vswitchd_pid, rss_kib,
                          running_lab)

SIZES = ((10, 3), (50, 10), (100, 10), (250, 25), (1000, 50))
QUICK_SIZES = ((10, 3), (50, 10))
SAME_NETWORK_PAIRS = 40
OTHER_NETWORK_PAIRS = 10
IDLE_SECONDS = 5.0


def measure(workdir: Path, sizes, controller_size: int | None) -> tuple[list[dict], dict | None]:
    """One entry per lab size, and the controller benchmark's result (or None)."""
    entries, controller = [], None
    for vms, computes in sizes:
        entry = {"vms": vms, "computes": computes, "networks": 5}
        entries.append(entry)
        topology = make_topology(workdir, f"bnch{vms}", vms, computes)
        available_before = _mem_available_kib()
        try:
            with running_lab(topology, entry) as lab:
                entry["memory_used_mib"] = _mib(available_before - _mem_available_kib())
                entry["reachability"] = check_reachability(lab)
                status = lab.status()
                bridges = [c["vrouter"] for c in status["computes"]]
                per_vrouter = [lab.flow_count(b) for b in bridges]
                entry["flows"] = sum(per_vrouter)
                entry["flows_per_vrouter"] = {"min": min(per_vrouter), "max": max(per_vrouter)}
                processes = {"controller": status["controller"]["pid"], "lab": status["lab"]["pid"],
                             "ovs-vswitchd": ovs_vswitchd_pid()}
                entry["controller_rss_mib"] = _mib(rss_kib(processes["controller"]))
                entry["lab_process_rss_mib"] = _mib(rss_kib(processes["lab"]))
                entry["ovs_vswitchd_rss_mib"] = _mib(rss_kib(processes["ovs-vswitchd"]))
                entry["open_files"] = {name: _open_files(pid) for name, pid in processes.items()}
                entry["controller_idle_cores"] = _cores(processes["controller"], IDLE_SECONDS)
                log(f"{vms} VMs: {entry['flows']} flows, controller RSS {entry['controller_rss_mib']} MiB, "
                    f"reachability {entry['reachability']['reached']}/{entry['reachability']['pairs']}")
                if vms == controller_size:
                    try:
                        controller = {"vms": vms, "computes": computes, **reconcile.measure(lab)}
                    except Exception as err:
                        log(f"controller benchmark failed: {err}")
                        controller = {"vms": vms, "error": str(err)}
        except Exception as err:
            log(f"{vms}-VM lab failed: {err}")
            entry["error"] = str(err)[-1500:]
        if "up" in entry:
            entry["up_seconds"] = entry["up"]["seconds"]
        log(f"{vms} VMs: up {entry.get('up_seconds')}s, down {entry.get('down_seconds')}s")
    return entries, controller


def check_reachability(lab: BenchLab, seed: int = 1) -> dict:
    """Ping a sample of VM pairs once each through the driver: SAME_NETWORK_PAIRS pairs of one
    network on different compute nodes (across the fabric) must answer, OTHER_NETWORK_PAIRS
    pairs of different networks must not. The pairs are drawn with a fixed seed, so every run
    checks the same ones."""
    choose = random.Random(seed)
    interfaces = list(lab.topology.interfaces())
    same = _sample_pairs(choose, interfaces, SAME_NETWORK_PAIRS,
                         lambda s, t: s.network == t.network and s.compute != t.compute)
    other = _sample_pairs(choose, interfaces, OTHER_NETWORK_PAIRS,
                          lambda s, t: s.network != t.network)
    started = time.monotonic()
    unreached = [pair for pair in same if not _pings(lab, *pair)]
    leaked = [pair for pair in other if _pings(lab, *pair)]
    return {"pairs": len(same), "reached": len(same) - len(unreached),
            "isolated_pairs": len(other), "isolated": len(other) - len(leaked),
            "seconds": round(time.monotonic() - started, 2),
            "failures": [f"{s.vm} -> {t.vm} ({t.ip}) unanswered" for s, t in unreached]
            + [f"{s.vm} -> {t.vm} ({t.ip}) answered across networks" for s, t in leaked]}


def _sample_pairs(choose: random.Random, interfaces, count: int, wanted) -> list:
    """Up to `count` distinct ordered pairs of `interfaces` that `wanted(source, target)` takes."""
    pairs = [(s, t) for s in interfaces for t in interfaces if s is not t and wanted(s, t)]
    return choose.sample(pairs, min(count, len(pairs)))


def _pings(lab: BenchLab, source, target) -> bool:
    """Whether one ping from `source` (an interface) to `target`'s address is answered."""
    return lab.exec(source.vm, "ping", "-c", "1", "-W", "1", "-q", str(target.ip),
                    timeout=30).returncode == 0


def _cores(pid: int | None, seconds: float) -> float | None:
    """The share of a core `pid` uses over `seconds` (None if it is gone)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    after = cpu_seconds(pid)
    return None if before is None or after is None else round((after - before) / seconds, 3)


def _open_files(pid: int | None) -> dict | None:
    """How many file descriptors `pid` has open, and its limit (soft RLIMIT_NOFILE)."""
    try:
        count = len(os.listdir(f"/proc/{pid}/fd"))
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return {"open": count, "limit": int(line.split()[3])}
    except (OSError, TypeError, ValueError):
        return None
    return None


def _mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib else None
