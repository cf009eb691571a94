"""The lab's mirror encapsulator: turns the vRouters' mirrored copies into Contrail's wire format.

OpenFlow cannot write the Juniper header's bytes, so the vRouters hand their copies to this
process, one link per vRouter (its ENCAP_PORT, `ComputeNode.encapsulator_interface` here). A
copy arrives as Ethernet-in-MPLS: the label names the capture, the traffic class its direction
(lab/recorder.py INGRESS_TC / EGRESS_TC). The encapsulator looks the label up in the
controller's encapsulation file (DIRECTORY/label-LABEL.wire.json, written before the copies
flow; labels are never reused, so what it read stays true), builds the IPv4/UDP packet with the
Juniper header around the original frame (lab/juniper.py) and sends it back on the same link,
where the vRouter outputs it to the analyzer's port.

A capture without the Juniper header (Contrail's dynamic mode with juniper_header false) gets
the original frame itself at the analyzer, which then cannot tell captures or directions
apart: the encapsulator writes that capture's pcap and directions (lab/recorder.py
CaptureFiles, with the same limits and stop reports) and hands the copy back unchanged, still
under its label, for the vRouter to unwrap and output to the analyzer's port. A static
destination (VXLAN to a VTEP on the fabric, which cannot tell directions apart either) is
recorded the same way, and its copy leaves as VXLAN with the capture's VNI, from the mirroring
compute node's fabric address and MAC to the VTEP's, for the vRouter to send over the fabric.
Copies whose encapsulation file says `"record": false` (network policies' copies, which
belong to no capture) are built and sent the same way, and recorded nowhere.

It runs in the lab's namespace, started and restarted by the lab process like the recorders.
Each link's socket is drained without blocking and the outer headers of each capture are built
once, so the per-copy work is a few slices and one send. Every second it writes its counters
and where its time went to DIRECTORY/encapsulator.stats.json (read by scripts/bench).
"""
from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from pathlib import Path

from mirrorlab.juniper import EGRESS, INGRESS, Encapsulation, Encapsulator
from mirrorlab.recorder import EGRESS_TC, FLUSH_INTERVAL, CaptureFiles, encapsulation_file

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: the socket does not read back what it sends
MPLS_ETHER_TYPE = b"\x88\x47"
COPY_HEADERS = 14 + 4
STATS_INTERVAL = 1.0
# An unknown label (its file not readable yet) is looked up again after this long.
RETRY_UNKNOWN = 0.2
# How many frames one socket gives before the others get their turn.
BATCH = 256


def stats_file(directory: Path) -> Path:
    """Where the encapsulator writes its counters."""
    return directory / "encapsulator.stats.json"


class Encapsulators:
    """The encapsulator of each capture, by label, read from the controller's files."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.by_label: dict[int, Encapsulator] = {}
        self.unknown_until: dict[int, float] = {}
        self.unrecorded: set[int] = set()  # labels whose header-less copies no capture records

    def get(self, label: int, now: float) -> Encapsulator | None:
        """The capture's encapsulator, or None if its file cannot be read (yet)."""
        found = self.by_label.get(label)
        if found is not None or self.unknown_until.get(label, 0.0) > now:
            return found
        try:
            entry = json.loads(encapsulation_file(self.directory, label).read_text())
            encapsulation = Encapsulation.from_dict(entry)
        except (OSError, ValueError, KeyError, TypeError):
            self.unknown_until[label] = now + RETRY_UNKNOWN
            return None
        self.unknown_until.pop(label, None)
        if entry.get("record") is False:
            self.unrecorded.add(label)
        found = self.by_label[label] = Encapsulator(encapsulation)
        return found


class Counters:
    """What the encapsulator did, and where its time went (seconds in each part)."""

    def __init__(self):
        self.values = {"copies": 0, "sent": 0, "unknown_label": 0, "not_a_copy": 0,
                       "send_errors": 0, "batches": 0, "seconds_receiving": 0.0,
                       "seconds_building": 0.0, "seconds_sending": 0.0, "last_error": None}

    def write(self, directory: Path) -> None:
        """Replace the stats file with the current counters."""
        path = stats_file(directory)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values))
        tmp.replace(path)


def _open(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket, encapsulators: Encapsulators, counters: Counters,
          headerless: CaptureFiles) -> None:
    """Encapsulate and send back up to BATCH copies waiting on `sock`; record the copies of
    header-less captures in `headerless` and send them back as they came."""
    values = counters.values
    clock = time.perf_counter
    now = time.monotonic()
    values["batches"] += 1
    for _ in range(BATCH):
        started = clock()
        try:
            frame = sock.recv(65535)
        except BlockingIOError:
            values["seconds_receiving"] += clock() - started
            return
        received = clock()
        values["seconds_receiving"] += received - started
        if frame[12:14] != MPLS_ETHER_TYPE or len(frame) <= COPY_HEADERS:
            values["not_a_copy"] += 1
            continue
        shim = int.from_bytes(frame[14:18], "big")
        encapsulator = encapsulators.get(shim >> 12, now)
        if encapsulator is None:
            values["unknown_label"] += 1
            continue
        values["copies"] += 1
        direction = EGRESS if (shim >> 9 & 0x7) == EGRESS_TC else INGRESS
        encapsulation = encapsulator.encapsulation
        if not encapsulation.juniper_header and shim >> 12 not in encapsulators.unrecorded:
            headerless.record(shim >> 12, direction, frame[COPY_HEADERS:], time.time())
        if encapsulation.juniper_header or encapsulation.vni is not None:
            packet = encapsulator.build(frame[COPY_HEADERS:], direction)
        else:
            packet = frame
        built = clock()
        values["seconds_building"] += built - received
        try:
            sock.send(packet)
            values["sent"] += 1
        except OSError as err:
            values["send_errors"] += 1
            values["last_error"] = f"{type(err).__name__}: {err}"
        values["seconds_sending"] += clock() - built


def main(argv: list[str] | None = None) -> int:
    """Encapsulate the copies arriving on each --interface until stopped."""
    parser = argparse.ArgumentParser(prog="python -m mirrorlab.encapsulator")
    parser.add_argument("--interface", action="append", required=True,
                        help="a link to one vRouter's ENCAP_PORT (repeat for each vRouter)")
    parser.add_argument("--directory", required=True, type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    sockets = [_open(name) for name in args.interface]
    encapsulators, counters = Encapsulators(args.directory), Counters()
    headerless = CaptureFiles(args.directory)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"encapsulator: copies on {', '.join(args.interface)}; encapsulations from "
          f"{args.directory}", file=sys.stderr, flush=True)
    last_stats = last_flush = time.monotonic()
    while True:
        ready, _, _ = select.select(sockets, [], [], FLUSH_INTERVAL)
        for sock in ready:
            drain(sock, encapsulators, counters, headerless)
        now = time.monotonic()
        if now - last_flush >= FLUSH_INTERVAL:
            headerless.flush()
            last_flush = now
        if now - last_stats >= STATS_INTERVAL:
            counters.write(args.directory)
            last_stats = now


if __name__ == "__main__":
    sys.exit(main())
