"""The small lab the capture, completeness and forwarding benchmarks share.

    bn1: bv1 (the monitored VM), bv3, the local analyzer
    bn2: bv2
    bn3: bv4, the remote analyzer

bv1 -> bv3 stays on one compute node; bv1 -> bv2 crosses the fabric. Captures watch bv1 and go
to one of DESTINATIONS: Contrail's default (Juniper header over UDP 8099) or header-less, to the
analyzer on bn1 (local) or the one on bn3 (remote: the copies cross the fabric), static
(VXLAN over the fabric to the fabric analyzer bprobe), or NIC-assisted (the fabric switch
mirrors VLAN 100 to bprobe).
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
PROBE, PROBE_IP, PROBE_MAC = "bprobe", "192.168.100.254", "02:fb:00:00:00:01"
# Where a capture's copies go: (an ANALYZERS placement or the fabric PROBE, mirror_to).
DESTINATIONS = {
    "local": ("local", {}),
    "remote": ("remote", {}),
    "local-noheader": ("local", {"juniper_header": False}),
    "remote-noheader": ("remote", {"juniper_header": False}),
    "static": (PROBE, {"nh_mode": "static", "static_nh_header": {
        "vtep_dst_ip_address": PROBE_IP, "vtep_dst_mac_address": PROBE_MAC, "vni": 5000}}),
    "nic": (PROBE, {"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}),
}
# NIC-assisted mirroring copies only what the monitored VM sends over the fabric.
SENT_ONLY = {"nic"}
# A benchmark's capture keeps its whole run: the lab's default pcap limit, 100 MiB, is 74,000
# copies of 1400-byte frames, reached within 1.5 s at 50k packets/s (a capture that stopped
# there would count as copies lost).
RUN_LIMIT_BYTES = 8 << 30

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
fabric_analyzers:
  - {{name: {PROBE}, ip: {PROBE_IP}}}
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

    def start_capture(self, where: str, direction: str = "both", limit_bytes: int | None = None) -> dict:
        """Start a capture of bv1 to destination `where` (a key of DESTINATIONS), its pcap
        holding at most `limit_bytes` (default: the lab's limit); its JSON."""
        placement, mirror_to = DESTINATIONS[where]
        if placement in ANALYZERS:
            mirror_to = {"analyzer_name": ANALYZERS[placement][0], **mirror_to}
        return self.lab.capture(MONITORED, direction=direction, mirror_to=mirror_to,
                                limit_bytes=limit_bytes).info

    def capture_now(self, capture: dict) -> dict:
        """A capture's JSON as the API shows it now."""
        return self.lab.api.get(f"/api/captures/{capture['id']}")

    def receiver(self, where: str) -> str:
        """The host whose interface receives the copies of destination `where`."""
        placement = DESTINATIONS[where][0]
        return self.analyzers[placement]["vm"] if placement in ANALYZERS else PROBE

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
