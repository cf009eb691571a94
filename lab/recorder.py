"""The analyzer's recorder: runs inside an analyzer VM and writes every mirrored copy it
receives to the pcap file of its capture.

Copies arrive as Ethernet-in-MPLS frames; the MPLS label names the capture, its traffic class
the direction (EGRESS_TC: delivered to the monitored VM; INGRESS_TC: sent by it). The recorder
strips the outer Ethernet and MPLS headers, so each capture's file holds the original frames
exactly, and writes them to DIRECTORY/label-LABEL.pcap, their directions to
DIRECTORY/label-LABEL.directions (lab/pcap.py). Anything else the analyzer receives (ARP, its
own network's traffic) is ignored.

Each capture's file has limits, set by the controller in DIRECTORY/label-LABEL.limits.json
before the copies flow: its size, and a floor of free disk space. At a limit the recorder stops
writing that capture and says why in DIRECTORY/label-LABEL.stopped.json, which the controller
reads to stop the capture. A recorder restarted after a crash appends to the files it finds,
first cutting off a record it was killed in the middle of writing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mirrorlab.pcap import (
    DIRECTION_BYTES, EGRESS, GLOBAL_HEADER, INGRESS, PCAP_HEADER, UNKNOWN_DIRECTION, complete_end,
    record_bytes,
)

# What the recorder logs once its socket is bound (its supervisor waits for it).
LISTENING = "recording copies on"
ETH_P_ALL = 0x0003
ETH_P_MPLS = 0x8847
OUTER_HEADERS = 14 + 4
FLUSH_INTERVAL = 0.05
MIB = 1 << 20
DEFAULT_LIMIT_BYTES = 100 * MIB
DEFAULT_MIN_FREE_BYTES = 256 * MIB
# The MPLS traffic class of a copy says which mirror table made it.
INGRESS_TC = 0
EGRESS_TC = 1


def capture_file(directory: Path, label: int) -> Path:
    """Where the recorder writes the copies carrying `label`."""
    return directory / f"label-{label}.pcap"


def directions_file(directory: Path, label: int) -> Path:
    """Where the recorder writes the direction of each copy carrying `label` (one byte each)."""
    return directory / f"label-{label}.directions"


def limits_file(directory: Path, label: int) -> Path:
    """Where the controller sets the limits of the capture carrying `label`."""
    return directory / f"label-{label}.limits.json"


def stop_report_file(directory: Path, label: int) -> Path:
    """Where the recorder says why it stopped recording `label`."""
    return directory / f"label-{label}.stopped.json"


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content))
    tmp.replace(path)


def set_limits(directory: Path, label: int, limit_bytes: int, min_free_bytes: int) -> None:
    """Set the file size limit and the free-disk floor of the capture carrying `label`."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(limits_file(directory, label), {"limit_bytes": limit_bytes,
                                                "min_free_bytes": min_free_bytes})


def stop_report(directory: Path, label: int) -> dict | None:
    """{"reason", "bytes"} if the recorder stopped recording `label`, else None."""
    try:
        return json.loads(stop_report_file(directory, label).read_text())
    except (OSError, ValueError):
        return None


def format_size(size: int) -> str:
    """`size` bytes in MiB, for messages."""
    return f"{size / MIB:.1f} MiB"


def parse_copy(frame: bytes) -> tuple[int, str, bytes] | None:
    """(label, direction, original frame) of a mirrored copy, or None if `frame` is not one;
    direction is "ingress" (the monitored VM sent it) or "egress" (it was delivered to it)."""
    if len(frame) <= OUTER_HEADERS or int.from_bytes(frame[12:14], "big") != ETH_P_MPLS:
        return None
    shim = int.from_bytes(frame[14:18], "big")
    if not shim & 0x100:  # bottom of stack: our copies carry exactly one label
        return None
    traffic_class = shim >> 9 & 0x7
    if traffic_class not in (INGRESS_TC, EGRESS_TC):
        return None
    return shim >> 12, EGRESS if traffic_class == EGRESS_TC else INGRESS, frame[OUTER_HEADERS:]


@dataclass
class _Output:
    file: BinaryIO
    directions: BinaryIO
    size: int
    limit_bytes: int
    min_free_bytes: int


def _open_for_append(path: Path, directions_path: Path) -> tuple[BinaryIO, BinaryIO, int]:
    """The pcap file at `path` and its directions file open for appending, and the pcap file's
    size: a new file gets the global header; an existing one loses a last record cut short (its
    writer was killed), and its directions file is made one byte per record again."""
    records = 0
    if path.exists():
        with open(path, "r+b") as pcap:
            end, records = complete_end(pcap)
            pcap.truncate(end)
    else:
        end = 0
    with open(directions_path, "a+b") as directions:
        directions.seek(0, 2)
        known = directions.tell()
        directions.truncate(min(known, records))
        directions.write(UNKNOWN_DIRECTION * (records - known))
    out = open(path, "ab")
    if end < GLOBAL_HEADER:
        out.write(PCAP_HEADER)
        end = GLOBAL_HEADER
    return out, open(directions_path, "ab"), end


class Recorder:
    """Writes copies to per-label pcap files within their limits, flushing them (and checking
    the free disk space) at most every FLUSH_INTERVAL."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.outputs: dict[int, _Output] = {}
        self.stopped: set[int] = set()
        self.dirty = set()

    def write(self, frame: bytes, when: float) -> None:
        """Record one frame received at time `when`."""
        parsed = parse_copy(frame)
        if parsed is None:
            return
        label, direction, original = parsed
        if label in self.stopped:
            return
        out = self.outputs.get(label) or self._open(label)
        if out is None:
            return
        record = record_bytes(when, original)
        if out.size + len(record) > out.limit_bytes:
            self._stop(label, f"limit reached ({out.limit_bytes} bytes)")
            return
        out.file.write(record)
        out.directions.write(DIRECTION_BYTES[direction])
        out.size += len(record)
        self.dirty.add(label)

    def _open(self, label: int) -> _Output | None:
        if stop_report(self.directory, label) is not None:  # stopped before a restart
            self.stopped.add(label)
            return None
        try:
            limits = json.loads(limits_file(self.directory, label).read_text())
        except (OSError, ValueError):
            limits = {}
        file, directions, size = _open_for_append(capture_file(self.directory, label),
                                                  directions_file(self.directory, label))
        self.outputs[label] = _Output(file, directions, size,
                                      limits.get("limit_bytes", DEFAULT_LIMIT_BYTES),
                                      limits.get("min_free_bytes", DEFAULT_MIN_FREE_BYTES))
        self._check_disk_floor([label])
        return self.outputs.get(label)

    def _check_disk_floor(self, labels) -> None:
        free = shutil.disk_usage(self.directory).free
        for label in labels:
            floor = self.outputs[label].min_free_bytes
            if free < floor:
                self._stop(label, f"disk floor: {format_size(free)} free in {self.directory}, "
                                  f"less than the floor of {format_size(floor)}")

    def _stop(self, label: int, reason: str) -> None:
        out = self.outputs.pop(label)
        out.file.close()
        out.directions.close()
        self.dirty.discard(label)
        self.stopped.add(label)
        _write_json(stop_report_file(self.directory, label), {"reason": reason, "bytes": out.size})
        print(f"recorder: stopped label {label}: {reason}", file=sys.stderr, flush=True)

    def flush(self) -> None:
        """Push buffered records to disk so readers see them, and stop every capture whose
        disk went below its free-space floor."""
        for label in self.dirty:
            self.outputs[label].file.flush()
            self.outputs[label].directions.flush()
        self.dirty.clear()
        if self.outputs:
            self._check_disk_floor(list(self.outputs))


def main(argv: list[str] | None = None) -> int:
    """Record copies arriving on --interface into --directory until stopped."""
    parser = argparse.ArgumentParser(prog="python -m mirrorlab.recorder")
    parser.add_argument("--interface", required=True)
    parser.add_argument("--directory", required=True, type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind((args.interface, 0))
    sock.settimeout(FLUSH_INTERVAL)
    recorder = Recorder(args.directory)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"recorder: {LISTENING} {args.interface} into {args.directory}",
          file=sys.stderr, flush=True)
    last_flush = time.monotonic()
    try:
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
    finally:
        recorder.flush()


if __name__ == "__main__":
    sys.exit(main())
