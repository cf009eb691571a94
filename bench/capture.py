"""Capture start and stop latency, with steady traffic running.

bv1 pings bv2 every millisecond (about 2,000 packets/s through bv1's interface, both ways).
For each capture:

  start latency = arrival time of the first record in the capture's pcap
                  - the time just before POST /api/captures was sent;
  stop latency  = arrival time of the last record - the time just before DELETE was sent.

The recorder stamps each copy with time.time() when it receives it, on the same machine clock
as the benchmark, so the two can be subtracted. The API's own response times are reported too;
the resolution of both latencies is the traffic's 1 ms packet interval.
"""
from __future__ import annotations

import subprocess
import time

from bench.common import log, pcap_times, summary
from bench.mirror_lab import ANALYZERS, DESTINATIONS, IPS, MONITORED, OTHER_NODE_PEER, MirrorLab

PACKET_INTERVAL = 0.001
HOLD_SECONDS = 0.3     # how long each capture stays active once its first copy arrived
SETTLE_SECONDS = 0.5   # after a stop, for the last copies and the recorder's 50 ms flush


def measure(mirror: MirrorLab, repetitions: int) -> dict:
    """Start/stop latency over `repetitions` captures, to each destination (Juniper header and
    header-less to the local and the remote analyzer, static VXLAN to the fabric probe)."""
    results = {"repetitions": repetitions, "traffic": f"ping -i {PACKET_INTERVAL} {MONITORED} -> "
                                                      f"{OTHER_NODE_PEER} (other compute node)"}
    for where in DESTINATIONS:
        results[where] = _measure_one(mirror, where, repetitions)
        s = results[where]
        log(f"capture latency ({where}): start median {s['start']['median']}s p95 {s['start']['p95']}s, "
            f"stop median {s['stop']['median']}s p95 {s['stop']['p95']}s")
    return results


def _measure_one(mirror: MirrorLab, where: str, repetitions: int) -> dict:
    lab = mirror.lab
    seconds = int(repetitions * 2 + 30)
    ping = lab.popen(MONITORED, "ping", "-q", "-i", str(PACKET_INTERVAL), "-w", str(seconds),
                     IPS[OTHER_NODE_PEER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, stop, api_start, api_stop, missed = [], [], [], [], 0
    try:
        time.sleep(1.0)
        for _ in range(repetitions):
            sent = time.time()
            capture = mirror.start_capture(where)
            answered = time.time()
            path = lab.pcap_path(capture)
            deadline = time.monotonic() + 5
            while not pcap_times(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(HOLD_SECONDS)
            stop_sent = time.time()
            mirror.stop_capture(capture)
            stop_answered = time.time()
            time.sleep(SETTLE_SECONDS)
            times = pcap_times(path)
            api_start.append(answered - sent)
            api_stop.append(stop_answered - stop_sent)
            if not times:
                missed += 1
                continue
            start.append(times[0] - sent)
            stop.append(times[-1] - stop_sent)
    finally:
        ping.terminate()
        ping.wait()
    placement = DESTINATIONS[where][0]
    return {"analyzer": ANALYZERS[placement][0] if placement in ANALYZERS else placement,
            "analyzer_compute": ANALYZERS[placement][1] if placement in ANALYZERS else "fabric",
            "start": summary(start), "stop": summary(stop),
            "api_start_response": summary(api_start), "api_stop_response": summary(api_stop),
            "captures_without_copies": missed}
