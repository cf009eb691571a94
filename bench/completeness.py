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

The copies pass the lab's mirror encapsulator (lab/encapsulator.py), which builds Contrail's
Juniper header: each run also gives its counters over the run (copies encapsulated, copies with
no known capture, failed sends) and where its time went, in microseconds per copy (receiving
from the vRouters, building the packet, sending it back).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import log, pcap_count, ratio, wait_stable
from bench.mirror_lab import DESTINATIONS, MONITORED, OTHER_NODE_PEER, SENT_ONLY, MirrorLab
from bench.traffic import iperf, udp_payload
from mirrorlab.encapsulator import STATS_INTERVAL, stats_file

FRAME_SIZES = (64, 1400)
FIXED_RATES = (1_000, 10_000, 50_000)


def max_forwarded_rate(mirror: MirrorLab, frame: int, seconds: float) -> dict:
    """The packets/s bv2 receives when bv1 sends UDP frames of `frame` bytes as fast as it can,
    with no capture."""
    result = iperf(mirror.endpoint(MONITORED), mirror.endpoint(OTHER_NODE_PEER), seconds, udp=True,
                   payload=udp_payload(frame))
    return {"frame_bytes": frame, "sent_pps": round(result["sent_packets_per_second"]),
            "forwarded_pps": round(result["received_packets_per_second"])}


def measure(mirror: MirrorLab, seconds: float, rates: tuple[int, ...] = FIXED_RATES) -> dict:
    """Completeness for every destination (bench/mirror_lab.py DESTINATIONS), frame size and
    rate."""
    limits = {}
    for frame in FRAME_SIZES:
        limits[frame] = max_forwarded_rate(mirror, frame, seconds)
        log(f"highest forwarded rate, {frame}-byte frames: {limits[frame]['forwarded_pps']} pps "
            f"(sender managed {limits[frame]['sent_pps']} pps)")
    runs = []
    for where in DESTINATIONS:
        analyzer_vm = mirror.receiver(where)
        for frame in FRAME_SIZES:
            targets = [(rate, str(rate)) for rate in rates]
            targets.append((max(limits[frame]["forwarded_pps"], 1), "max"))
            for rate, rate_name in targets:
                run = _one_run(mirror, where, analyzer_vm, frame, rate, seconds)
                run["rate_name"] = rate_name
                runs.append(run)
                log(f"completeness {where} {frame}B {rate_name} ({rate} pps): "
                    f"{run['completeness']} ({run['mirrored']}/{run['monitored_packets']}), "
                    f"copies at analyzer {run['analyzer_rx']}")
    return {"seconds_per_run": seconds, "direction": "both",
            "traffic": f"iperf3 -u {MONITORED} -> {OTHER_NODE_PEER} (other compute node)",
            "max_forwarded": [limits[f] for f in FRAME_SIZES], "runs": runs}


def _one_run(mirror: MirrorLab, where: str, analyzer_vm: str, frame: int, rate: int,
             seconds: float) -> dict:
    lab = mirror.lab
    payload = udp_payload(frame)
    analyzer_before = lab.counters(analyzer_vm)
    capture = mirror.start_capture(where)
    captures_dir = lab.pcap_path(capture).parent
    encapsulator_before = _encapsulator_stats(captures_dir)
    try:
        before = lab.counters(MONITORED)
        peer_before = lab.counters(OTHER_NODE_PEER)
        stream = iperf(mirror.endpoint(MONITORED), mirror.endpoint(OTHER_NODE_PEER), seconds,
                       udp=True, payload=payload, bitrate=rate * payload * 8)
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
