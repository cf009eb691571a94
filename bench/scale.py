"""Lab scale: bring-up and tear-down time of generated labs, their flows and controller memory.

For each size (VMs on compute nodes, 5 networks, VMs spread round-robin), `mirrorlab up`
is timed until it returns (it returns once every VM reaches its peers), with the time each
bring-up phase began; then the flows of all vRouters are counted (`ovs-ofctl -O OpenFlow13
dump-flows`), the controller's and the lab process's resident memory read (PIDs from
`mirrorlab status --json`), and `mirrorlab down` is timed. On the lab of `controller_size`
VMs the controller benchmark (`bench.reconcile`) runs too.
"""
from __future__ import annotations

from pathlib import Path

from bench import reconcile
from bench.common import log, make_topology, rss_kib, running_lab

SIZES = ((10, 3), (50, 10), (100, 10), (250, 25))
QUICK_SIZES = ((10, 3), (50, 10))


def measure(workdir: Path, sizes, controller_size: int | None) -> tuple[list[dict], dict | None]:
    """One entry per lab size, and the controller benchmark's result (or None)."""
    entries, controller = [], None
    for vms, computes in sizes:
        entry = {"vms": vms, "computes": computes, "networks": 5}
        entries.append(entry)
        topology = make_topology(workdir, f"bnch{vms}", vms, computes)
        try:
            with running_lab(topology, entry) as lab:
                status = lab.status()
                bridges = [c["vrouter"] for c in status["computes"]]
                entry["flows"] = sum(lab.flow_count(b) for b in bridges)
                entry["controller_rss_mib"] = _mib(rss_kib(status["controller"]["pid"]))
                entry["lab_process_rss_mib"] = _mib(rss_kib(status["lab"]["pid"]))
                log(f"{vms} VMs: {entry['flows']} flows, controller RSS {entry['controller_rss_mib']} MiB")
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


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib else None
