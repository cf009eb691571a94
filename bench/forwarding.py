"""Forwarding cost: iperf3 TCP and UDP throughput between two VMs, without and with an active
capture (direction both, local analyzer) on the sending VM, on one compute node and across two;
and, in the same run, the bare limits (see `bench.bare`).

UDP is iperf3 -u -b 0 -l 1400 (the client sends as fast as it can); its figure is what the
receiver got. Every configuration runs `repetitions` times, interleaved, and reports the median.
Ratios: with capture / without, and each figure / each bare limit. During the lab's runs the
CPU used by ovs-vswitchd (every userspace datapath of the machine) and by the local analyzer's
recorder is read from /proc, in cores (CPU seconds per second), to show where a capture's cost goes.
"""
from __future__ import annotations

import statistics
import time

from bench.common import cpu_seconds, log, ovs_vswitchd_pid, ratio
from bench.mirror_lab import MONITORED, OTHER_NODE_PEER, SAME_NODE_PEER, MirrorLab
from bench.traffic import iperf

UDP_PAYLOAD = 1400
PROTOCOLS = ("tcp", "udp")


def _throughput(client, server, protocol: str, seconds: float) -> float:
    udp = protocol == "udp"
    result = iperf(client, server, seconds, udp=udp, payload=UDP_PAYLOAD if udp else None)
    return result["bits_per_second"]


def _median_mbps(samples: list[float]) -> float | None:
    return round(statistics.median(samples) / 1e6, 1) if samples else None


def measure_bare(setups: dict, seconds: float, repetitions: int) -> dict:
    """Throughput of the bare limits: {"veth": {"tcp": Mbit/s...}, "ovs": {...}}."""
    samples = {(name, p): [] for name in setups for p in PROTOCOLS}
    for _ in range(repetitions):
        for name, (client, server) in setups.items():
            for protocol in PROTOCOLS:
                samples[(name, protocol)].append(_throughput(client, server, protocol, seconds))
    result = {name: {p: {"mbps": _median_mbps(samples[(name, p)]),
                         "samples_mbps": [round(s / 1e6, 1) for s in samples[(name, p)]]}
                     for p in PROTOCOLS} for name in setups}
    for name in setups:
        log(f"bare limit {name}: TCP {result[name]['tcp']['mbps']} Mbit/s, "
            f"UDP {result[name]['udp']['mbps']} Mbit/s")
    return result


def measure(mirror: MirrorLab, seconds: float, repetitions: int, bare: dict | None) -> dict:
    """Throughput with and without capture, same node and across nodes, with ratios."""
    pairs = {"same_node": (MONITORED, SAME_NODE_PEER), "cross_node": (MONITORED, OTHER_NODE_PEER)}
    processes = {"ovs_vswitchd": ovs_vswitchd_pid(),
                 "recorder": mirror.lab.recorder_pid(mirror.analyzers["local"]["vm"])}
    samples = {(pair, p, c): [] for pair in pairs for p in PROTOCOLS for c in (False, True)}
    cpu = {(pair, p, c): {name: [] for name in processes}
           for pair in pairs for p in PROTOCOLS for c in (False, True)}
    for _ in range(repetitions):
        for with_capture in (False, True):
            capture = mirror.start_capture("local") if with_capture else None
            try:
                for pair, (client, server) in pairs.items():
                    for protocol in PROTOCOLS:
                        key = (pair, protocol, with_capture)
                        before = {n: cpu_seconds(pid) for n, pid in processes.items()}
                        started = time.monotonic()
                        samples[key].append(_throughput(mirror.endpoint(client), mirror.endpoint(server),
                                                        protocol, seconds))
                        elapsed = time.monotonic() - started
                        for name, pid in processes.items():
                            after = cpu_seconds(pid)
                            if after is not None and before[name] is not None:
                                cpu[key][name].append((after - before[name]) / elapsed)
            finally:
                if capture:
                    mirror.stop_capture(capture)
    result = {"seconds_per_run": seconds, "repetitions": repetitions, "udp_payload": UDP_PAYLOAD,
              "capture": "direction both on the sender, to the analyzer on its compute node",
              "pairs": {name: f"{a} -> {b}" for name, (a, b) in pairs.items()}, "results": {}}
    for pair in pairs:
        for protocol in PROTOCOLS:
            without = _median_mbps(samples[(pair, protocol, False)])
            with_ = _median_mbps(samples[(pair, protocol, True)])
            entry = {"without_capture_mbps": without, "with_capture_mbps": with_,
                     "with_over_without": ratio(with_, without),
                     "samples_without_mbps": [round(s / 1e6, 1) for s in samples[(pair, protocol, False)]],
                     "samples_with_mbps": [round(s / 1e6, 1) for s in samples[(pair, protocol, True)]]}
            for name, limits in (bare or {}).items():
                limit = limits[protocol]["mbps"]
                entry[f"without_over_{name}"] = ratio(without, limit)
                entry[f"with_over_{name}"] = ratio(with_, limit)
            for state, with_capture in (("without", False), ("with", True)):
                for name, values in cpu[(pair, protocol, with_capture)].items():
                    entry[f"cpu_cores_{name}_{state}"] = (round(statistics.median(values), 2)
                                                          if values else None)
            result["results"][f"{pair}/{protocol}"] = entry
            log(f"forwarding {pair} {protocol}: {without} -> {with_} Mbit/s with capture "
                f"(x{entry['with_over_without']}); ovs-vswitchd {entry['cpu_cores_ovs_vswitchd_without']} -> "
                f"{entry['cpu_cores_ovs_vswitchd_with']} cores, recorder {entry['cpu_cores_recorder_with']} cores")
    return result
