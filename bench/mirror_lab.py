"""The small lab the capture, completeness and forwarding benchmarks share.

    bn1: bv1 (the monitored VM), bv3, the local analyzer
    bn2: bv2
    bn3: bv4, the remote analyzer

bv1 -> bv3 stays on one compute node; bv1 -> bv2 crosses the fabric. Captures watch bv1 and go
either to the analyzer on bn1 (local) or to the one on bn3 (remote: the copies cross the fabric).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ANALYZER_SUBNET, BenchLab, log
from bench.traffic import Endpoint, vm_endpoint

NAME = "bnchmirror"
MONITORED = "bv1"
IPS = {"bv1": "10.150.0.11", "bv2": "10.150.0.12", "bv3": "10.150.0.13", "bv4": "10.150.0.14"}
SAME_NODE_PEER = "bv3"
OTHER_NODE_PEER = "bv2"
ANALYZERS = {"local": ("bench-local", "bn1"), "remote": ("bench-remote", "bn3")}

TOPOLOGY = f"""\
# The benchmarks' mirroring lab (bench/mirror_lab.py).
name: {NAME}
computes: [bn1, bn2, bn3]
networks:
  - {{name: bnet1, subnet: 10.150.0.0/24}}
analyzer_network: {{name: bnet-svc, subnet: {ANALYZER_SUBNET}}}
vms:
  - {{name: bv1, compute: bn1, network: bnet1, ip: {IPS['bv1']}}}
  - {{name: bv2, compute: bn2, network: bnet1, ip: {IPS['bv2']}}}
  - {{name: bv3, compute: bn1, network: bnet1, ip: {IPS['bv3']}}}
  - {{name: bv4, compute: bn3, network: bnet1, ip: {IPS['bv4']}}}
"""


def write_topology(directory: Path) -> Path:
    """Write the lab's topology file; return its path."""
    path = directory / f"{NAME}.yaml"
    path.write_text(TOPOLOGY)
    return path


@dataclass
class MirrorLab:
    """The running lab, with its analyzers (name -> analyzer JSON) and the analyzer launch times."""

    lab: BenchLab
    analyzers: dict
    launch_seconds: dict

    def endpoint(self, vm: str) -> Endpoint:
        """A VM of the lab as a traffic endpoint."""
        return vm_endpoint(self.lab, vm, IPS[vm])

    def start_capture(self, where: str, direction: str = "both") -> dict:
        """Start a capture of bv1 to the local or remote analyzer; its JSON."""
        return self.lab.capture(MONITORED, direction=direction, analyzer=ANALYZERS[where][0]).info

    def stop_capture(self, capture: dict) -> dict:
        """Stop a capture; its JSON."""
        return self.lab.api.delete(f"/api/captures/{capture['id']}")


def prepare(lab: BenchLab) -> MirrorLab:
    """Launch the two analyzers (timing each launch)."""
    analyzers, launch = {}, {}
    for where, (name, compute) in ANALYZERS.items():
        started = time.monotonic()
        analyzers[where] = lab.create_analyzer(name, compute=compute)
        launch[where] = round(time.monotonic() - started, 3)
        log(f"analyzer {name} ({analyzers[where]['vm']} on {compute}) launched in {launch[where]}s")
    return MirrorLab(lab, analyzers, launch)
