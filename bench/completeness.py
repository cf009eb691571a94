"""Mirror completeness: of the packets the monitored VM sent and received while a capture ran,
the share the analyzer recorded.

bv1 sends a UDP stream (iperf3 -u -l PAYLOAD -b RATE) to bv2 on another compute node while a
capture (direction both) mirrors bv1 to the local or the remote analyzer. For each frame size
(64 and 1400 bytes: Ethernet frames without FCS, iperf3 payload = size - 42) and each rate (1k,
10k, 50k packets/s and the highest rate the lab forwards, measured first without capture):

  completeness = records in the capture's pcap / (bv1's tx_packets + rx_packets delta)

The counters are read inside bv1 right after the capture started and right before it is
stopped, so the counted window lies inside the mirrored one; the pcap is counted once it stops
growing. Where copies are lost is told by two more counts: copies that reached the analyzer
VM's interface (its rx_packets delta); and whether the stream itself got through is told by
bv2's interface counter (rx_packets delta) and by what its iperf3 server read.

Then, for each destination and frame size, the highest rate at which the capture stays complete
(every packet recorded, every copy at the analyzer's interface and the stream at bv2: `complete`) is
searched for by bisection between the highest complete rate and the lowest incomplete one
measured (to SEARCH_PRECISION packets/s, at most SEARCH_STEPS more runs). Each run also reads
the CPU ovs-vswitchd used (cores), which shows when the datapath itself is the limit.

The copies pass the lab's mirror encapsulator (lab/encapsulator.py), which builds Contrail's
Juniper header: each run also gives its counters over the run (copies encapsulated, copies with
no known capture, failed sends) and where its time went, in microseconds per copy (receiving
from the vRouters, building the packet, sending it back).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import cpu_seconds, log, ovs_vswitchd_pid, pcap_count, ratio, wait_stable
from bench.mirror_lab import (
    DESTINATIONS, MONITORED, OTHER_NODE_PEER, RUN_LIMIT_BYTES, SENT_ONLY, MirrorLab,
)
from bench.traffic import iperf, udp_payload
from mirrorlab.encapsulator import STATS_INTERVAL, stats_file

FRAME_SIZES = (64, 1400)
FIXED_RATES = (1_000, 10_000, 50_000)
# The search for the highest complete rate: runs at most, and when it is close enough.
SEARCH_STEPS = 5
SEARCH_PRECISION = 2_000


def max_forwarded_rate(mirror: MirrorLab, frame: int, seconds: float) -> dict:
    """The packets/s bv2 receives when bv1 sends UDP frames of `frame` bytes as fast as it can,
    with no capture."""
    result = iperf(mirror.endpoint(MONITORED), mirror.endpoint(OTHER_NODE_PEER), seconds, udp=True,
                   payload=udp_payload(frame))
    return {"frame_bytes": frame, "sent_pps": round(result["sent_packets_per_second"]),
            "forwarded_pps": round(result["received_packets_per_second"])}


def bare_packet_rates(setups: dict, seconds: float) -> dict:
    """The packets/s each bare limit (bench/bare.py) forwards when its client sends UDP frames
    of each FRAME_SIZES as fast as it can: {name: {frame: {"sent_pps", "forwarded_pps"}}}."""
    rates = {}
    for name, (client, server) in setups.items():
        for frame in FRAME_SIZES:
            result = iperf(client, server, seconds, udp=True, payload=udp_payload(frame))
            rates.setdefault(name, {})[frame] = {
                "sent_pps": round(result["sent_packets_per_second"]),
                "forwarded_pps": round(result["received_packets_per_second"])}
            log(f"bare limit {name}, {frame}-byte frames: {rates[name][frame]['forwarded_pps']} pps")
    return rates


def measure(mirror: MirrorLab, seconds: float, rates: tuple[int, ...] = FIXED_RATES,
            search_steps: int = SEARCH_STEPS) -> dict:
    """Completeness for every destination (bench/mirror_lab.py DESTINATIONS), frame size and
    rate, and the highest complete rate of each destination and frame size."""
    limits = {}
    for frame in FRAME_SIZES:
        limits[frame] = max_forwarded_rate(mirror, frame, seconds)
        log(f"highest forwarded rate, {frame}-byte frames: {limits[frame]['forwarded_pps']} pps "
            f"(sender managed {limits[frame]['sent_pps']} pps)")
    runs, highest = [], []
    for where in DESTINATIONS:
        analyzer_vm = mirror.receiver(where)
        for frame in FRAME_SIZES:
            targets = [(rate, str(rate)) for rate in rates]
            targets.append((max(limits[frame]["forwarded_pps"], 1), "max"))
            tried = []
            for rate, rate_name in targets:
                tried.append(_logged_run(mirror, where, analyzer_vm, frame, rate, seconds, rate_name))
            for _step in range(search_steps):
                rate = _next_search_rate(tried)
                if rate is None:
                    break
                tried.append(_logged_run(mirror, where, analyzer_vm, frame, rate, seconds, "search"))
            runs += tried
            highest.append(_highest_complete(where, frame, tried))
    return {"seconds_per_run": seconds, "direction": "both",
            "traffic": f"iperf3 -u {MONITORED} -> {OTHER_NODE_PEER} (other compute node)",
            "max_forwarded": [limits[f] for f in FRAME_SIZES], "runs": runs,
            "highest_complete": highest}


# A complete run's monitored stream reached bv2 whole but for this share (a VM's own ARP or
# neighbour discovery counts in its sent packets and never reaches the peer).
STREAM_TOLERANCE = 0.001


def complete(run: dict) -> bool:
    """Whether a run lost nothing: as many records as packets monitored, as many copies at
    the analyzer's interface (a few more are the capture window's idle edges), and the
    monitored stream itself at bv2 (copies complete while the originals were dropped, as a
    static destination's can be, do not count)."""
    return (run["mirrored"] >= run["monitored_packets"]
            and run["analyzer_rx"] >= run["monitored_packets"]
            and run["peer_rx"] >= run["vm_sent"] * (1 - STREAM_TOLERANCE))


def _next_search_rate(tried: list[dict]) -> int | None:
    """The middle of the highest complete and the lowest incomplete rate tried so far (rounded
    to 500 packets/s), or None once they are within SEARCH_PRECISION or every rate was
    complete."""
    good = [r["target_pps"] for r in tried if complete(r)]
    bad = [r["target_pps"] for r in tried if not complete(r)]
    if not bad:
        return None
    low, high = max(good, default=0), min(bad)
    if high - low <= SEARCH_PRECISION:
        return None
    return max(500, round((low + high) / 2 / 500) * 500)


def _highest_complete(where: str, frame: int, tried: list[dict]) -> dict:
    """The highest complete rate of one destination and frame size, and the lowest incomplete
    one above it (None: every rate tried was complete, up to the highest the lab forwards)."""
    good = [r["target_pps"] for r in tried if complete(r)]
    highest = max(good, default=None)
    above = [r["target_pps"] for r in tried if not complete(r) and r["target_pps"] > (highest or 0)]
    return {"analyzer": where, "frame_bytes": frame, "highest_complete_pps": highest,
            "lowest_incomplete_pps": min(above, default=None)}


def _logged_run(mirror: MirrorLab, where: str, analyzer_vm: str, frame: int, rate: int,
                seconds: float, rate_name: str) -> dict:
    run = _one_run(mirror, where, analyzer_vm, frame, rate, seconds)
    run["rate_name"] = rate_name
    log(f"completeness {where} {frame}B {rate_name} ({rate} pps): "
        f"{run['completeness']} ({run['mirrored']}/{run['monitored_packets']}), "
        f"copies at analyzer {run['analyzer_rx']}, peer rx {run['peer_rx']}/{run['vm_sent']}, "
        f"ovs-vswitchd {run['ovs_vswitchd_cores']} cores")
    return run


def _one_run(mirror: MirrorLab, where: str, analyzer_vm: str, frame: int, rate: int,
             seconds: float) -> dict:
    lab = mirror.lab
    payload = udp_payload(frame)
    analyzer_before = lab.counters(analyzer_vm)
    capture = mirror.start_capture(where, limit_bytes=RUN_LIMIT_BYTES)
    captures_dir = lab.pcap_path(capture).parent
    encapsulator_before = _encapsulator_stats(captures_dir)
    vswitchd = ovs_vswitchd_pid()
    try:
        before = lab.counters(MONITORED)
        peer_before = lab.counters(OTHER_NODE_PEER)
        cpu_before, started = cpu_seconds(vswitchd), time.monotonic()
        stream = iperf(mirror.endpoint(MONITORED), mirror.endpoint(OTHER_NODE_PEER), seconds,
                       udp=True, payload=payload, bitrate=rate * payload * 8)
        cpu_after, elapsed = cpu_seconds(vswitchd), time.monotonic() - started
        time.sleep(0.5)
        after = lab.counters(MONITORED)
        peer_after = lab.counters(OTHER_NODE_PEER)
    finally:
        mirror.stop_capture(capture)
    path = lab.pcap_path(capture)
    mirrored = wait_stable(lambda: pcap_count(path), settle=1.0, timeout=120)
    analyzer_after = lab.counters(analyzer_vm)
    time.sleep(STATS_INTERVAL + 0.2)  # the encapsulator's next stats cover the whole run
    encapsulator = _encapsulator_delta(encapsulator_before, _encapsulator_stats(captures_dir))
    sent = after["tx_packets"] - before["tx_packets"]
    # A NIC-assisted capture copies only what the VM sends over the fabric (bv2 is there).
    received = 0 if where in SENT_ONLY else after["rx_packets"] - before["rx_packets"]
    analyzer_rx = analyzer_after["rx_packets"] - analyzer_before["rx_packets"]
    return {
        "analyzer": where, "frame_bytes": frame, "target_pps": rate,
        "sender_pps": round(stream["sent_packets_per_second"]),
        "receiver_pps": round(stream["received_packets_per_second"]),
        "vm_sent": sent, "vm_received": received, "monitored_packets": sent + received,
        "peer_rx": peer_after["rx_packets"] - peer_before["rx_packets"],
        "mirrored": mirrored, "analyzer_rx": analyzer_rx,
        "analyzer_rx_dropped": analyzer_after["rx_dropped"] - analyzer_before["rx_dropped"],
        "completeness": ratio(mirrored, sent + received, 4),
        "delivered_to_analyzer": ratio(analyzer_rx, sent + received, 4),
        "encapsulator": encapsulator,
        "ovs_vswitchd_cores": (round((cpu_after - cpu_before) / elapsed, 2)
                               if cpu_before is not None and cpu_after is not None else None),
    }


def _encapsulator_stats(captures_dir: Path) -> dict:
    """The mirror encapsulator's counters as last written (zeros before its first write)."""
    try:
        return json.loads(stats_file(captures_dir).read_text())
    except (OSError, ValueError):
        return {}


def _encapsulator_delta(before: dict, after: dict) -> dict:
    """What the encapsulator did between two of its stats: counts, and microseconds per copy in
    each part of its loop."""
    delta = {key: after.get(key, 0) - before.get(key, 0)
             for key in ("copies", "sent", "unknown_label", "send_errors", "batches")}
    copies = max(delta["copies"], 1)
    for part in ("receiving", "building", "sending"):
        seconds = after.get(f"seconds_{part}", 0.0) - before.get(f"seconds_{part}", 0.0)
        delta[f"us_per_copy_{part}"] = round(seconds / copies * 1e6, 2)
    return delta
