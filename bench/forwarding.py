"""Forwarding cost: iperf3 TCP and UDP throughput between two VMs, with no capture and with a
capture (direction both) on the sending VM to each destination of bench/mirror_lab.py (Juniper
header and header-less to the local and the remote analyzer, static VXLAN and NIC-assisted to
the fabric probe), on one compute node and across two; and, in the same run, the bare limits
(see `bench.bare`).

UDP is iperf3 -u -b 0 -l 1400 (the client sends as fast as it can); its figure is what the
receiver got. Each repetition measures every configuration in turn (no capture first, then one
destination after the other), each run with a capture of its own (started just before, its pcap
large enough for the whole run, checked still active at the end), and each figure is the median
over the repetitions. Ratios: with a
capture / without (both from the same run), and each figure / each bare limit. During the lab's
runs the CPU used by ovs-vswitchd (every userspace datapath of the machine), by the mirror
encapsulator (lab/encapsulator.py) and by the receiving analyzer's recorder is read from /proc,
in cores (CPU seconds per second), to show where a capture's cost goes.
"""
from __future__ import annotations

import statistics
import time

from bench.common import cpu_seconds, log, ovs_vswitchd_pid, ratio
from bench.mirror_lab import (
    ANALYZERS, DESTINATIONS, MONITORED, OTHER_NODE_PEER, RUN_LIMIT_BYTES, SAME_NODE_PEER, MirrorLab,
)
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


NO_CAPTURE = "none"


def _processes(mirror: MirrorLab, where: str) -> dict:
    """The PIDs whose CPU a run to destination `where` reads (None: not running)."""
    placement = DESTINATIONS[where][0] if where != NO_CAPTURE else None
    recorder = (mirror.lab.recorder_pid(mirror.analyzers[placement]["vm"])
                if placement in ANALYZERS else None)
    return {"ovs_vswitchd": ovs_vswitchd_pid(), "encapsulator": mirror.lab.encapsulator_pid(),
            "recorder": recorder}


def _measured_run(mirror: MirrorLab, where: str, client: str, server: str, protocol: str,
                  seconds: float, cpu: dict) -> float:
    """One iperf3 run from `client` to `server` with a fresh capture to `where` (or none): its
    bits/s; each process's CPU in cores is appended to `cpu`. A capture that ended during the
    run is an error, never a figure."""
    capture = (mirror.start_capture(where, limit_bytes=RUN_LIMIT_BYTES)
               if where != NO_CAPTURE else None)
    try:
        processes = _processes(mirror, where)
        before = {name: cpu_seconds(pid) for name, pid in processes.items() if pid}
        started = time.monotonic()
        bits_per_second = _throughput(mirror.endpoint(client), mirror.endpoint(server),
                                      protocol, seconds)
        elapsed = time.monotonic() - started
        for name, used in before.items():
            after = cpu_seconds(processes[name])
            if after is not None and used is not None:
                cpu.setdefault(name, []).append((after - used) / elapsed)
        if capture is not None:
            now = mirror.capture_now(capture)
            if now["state"] != "active":
                raise RuntimeError(f"the capture to {where} ended during the {client} -> {server} "
                                   f"{protocol} run: {now['state']}, {now['stop_reason']}")
        return bits_per_second
    finally:
        if capture is not None:
            mirror.stop_capture(capture)


def measure(mirror: MirrorLab, seconds: float, repetitions: int, bare: dict | None) -> dict:
    """Throughput with no capture and with a capture to each destination, same node and
    across nodes, with ratios to no capture and to the bare limits, and CPU by process."""
    pairs = {"same_node": (MONITORED, SAME_NODE_PEER), "cross_node": (MONITORED, OTHER_NODE_PEER)}
    configurations = (NO_CAPTURE, *DESTINATIONS)
    samples = {(pair, p, w): [] for pair in pairs for p in PROTOCOLS for w in configurations}
    cpu = {key: {} for key in samples}
    for _ in range(repetitions):
        for where in configurations:
            for pair, (client, server) in pairs.items():
                for protocol in PROTOCOLS:
                    key = (pair, protocol, where)
                    samples[key].append(_measured_run(mirror, where, client, server, protocol,
                                                      seconds, cpu[key]))
    result = {"seconds_per_run": seconds, "repetitions": repetitions, "udp_payload": UDP_PAYLOAD,
              "capture": "direction both on the sender",
              "destinations": {where: DESTINATIONS[where][1] | {"to": DESTINATIONS[where][0]}
                               for where in DESTINATIONS},
              "pairs": {name: f"{a} -> {b}" for name, (a, b) in pairs.items()}, "results": {}}
    for pair in pairs:
        for protocol in PROTOCOLS:
            without = _median_mbps(samples[(pair, protocol, NO_CAPTURE)])
            entry = {}
            for where in configurations:
                key = (pair, protocol, where)
                mbps = _median_mbps(samples[key])
                figures = {"mbps": mbps, "over_no_capture": ratio(mbps, without),
                           "samples_mbps": [round(s / 1e6, 1) for s in samples[key]]}
                for name, limits in (bare or {}).items():
                    figures[f"over_{name}"] = ratio(mbps, limits[protocol]["mbps"])
                figures["cpu_cores"] = {name: round(statistics.median(values), 2)
                                        for name, values in cpu[key].items() if values}
                entry[where] = figures
            result["results"][f"{pair}/{protocol}"] = entry
            log(f"forwarding {pair} {protocol}: {without} Mbit/s without capture; "
                + ", ".join(f"{where} x{entry[where]['over_no_capture']}" for where in DESTINATIONS))
    return result
