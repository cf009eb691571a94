"""The analyzer's recorder: runs inside an analyzer VM and writes every mirrored copy it
receives to the pcap file of its capture.

Copies arrive as Ethernet-in-MPLS frames; the MPLS label names the capture. The recorder strips
the outer Ethernet and MPLS headers, so each capture's file holds the original frames exactly,
and writes them to DIRECTORY/label-LABEL.pcap. Anything else the analyzer receives (ARP, its
own network's traffic) is ignored.
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
ETH_P_MPLS = 0x8847
OUTER_HEADERS = 14 + 4
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet linktype
FLUSH_INTERVAL = 0.05


def capture_file(directory: Path, label: int) -> Path:
    """Where the recorder writes the copies carrying `label`."""
    return directory / f"label-{label}.pcap"


def parse_copy(frame: bytes) -> tuple[int, bytes] | None:
    """(label, original frame) of a mirrored copy, or None if `frame` is not one."""
    if len(frame) <= OUTER_HEADERS or int.from_bytes(frame[12:14], "big") != ETH_P_MPLS:
        return None
    shim = int.from_bytes(frame[14:18], "big")
    if not shim & 0x100:  # bottom of stack: our copies carry exactly one label
        return None
    return shim >> 12, frame[OUTER_HEADERS:]


class Recorder:
    """Writes copies to per-label pcap files, flushing them at most every FLUSH_INTERVAL."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.files = {}
        self.dirty = set()

    def write(self, frame: bytes, when: float) -> None:
        """Record one frame received at time `when`."""
        parsed = parse_copy(frame)
        if parsed is None:
            return
        label, original = parsed
        out = self.files.get(label)
        if out is None:
            path = capture_file(self.directory, label)
            fresh = not path.exists()
            out = self.files[label] = open(path, "ab")
            if fresh:
                out.write(PCAP_HEADER)
        seconds = int(when)
        out.write(struct.pack("<IIII", seconds, int((when - seconds) * 1e6), len(original),
                              len(original)))
        out.write(original)
        self.dirty.add(label)

    def flush(self) -> None:
        """Push buffered records to disk so readers see them."""
        for label in self.dirty:
            self.files[label].flush()
        self.dirty.clear()


def main(argv: list[str] | None = None) -> int:
    """Record copies arriving on --interface into --directory until killed."""
    parser = argparse.ArgumentParser(prog="python -m lab.recorder")
    parser.add_argument("--interface", required=True)
    parser.add_argument("--directory", required=True, type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind((args.interface, 0))
    sock.settimeout(FLUSH_INTERVAL)
    recorder = Recorder(args.directory)
    last_flush = time.monotonic()
    while True:
        try:
            frame, address = sock.recvfrom(65535)
            if address[2] != socket.PACKET_OUTGOING:
                recorder.write(frame, time.time())
        except socket.timeout:
            pass
        now = time.monotonic()
        if now - last_flush >= FLUSH_INTERVAL:
            recorder.flush()
            last_flush = now


if __name__ == "__main__":
    sys.exit(main())
