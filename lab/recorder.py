"""The analyzer's recorder: runs inside an analyzer VM, writes every mirrored copy it receives
to the pcap file of its capture, and everything its interface receives to its raw capture.

Copies arrive in Contrail's wire format, dynamic with the Juniper header (lab/juniper.py): IPv4/UDP
from the mirroring vRouter's address, a UDP source port whose top bits are the capture's mirror
index on that vRouter, the TLV header (type 3: sent by the monitored VM; type 4: delivered to
it), then the original frame. The recorder tells captures apart by (outer source address, mirror
index), looked up in the encapsulation files the controller writes before the copies flow
(DIRECTORY/label-LABEL.wire.json, each naming the analyzer interface it is for), writes the
original frames exactly to DIRECTORY/label-LABEL.pcap and their directions to
DIRECTORY/label-LABEL.directions (lab/pcap.py). Everything the interface receives, headers and
all, goes to DIRECTORY/raw-INTERFACE.pcap (up to RAW_LIMIT_BYTES): what an engineer compares
with a customer's capture.

Each capture's file has limits, set by the controller in DIRECTORY/label-LABEL.limits.json
before the copies flow: its size, and a floor of free disk space. At a limit the recorder stops
writing that capture and says why in DIRECTORY/label-LABEL.stopped.json, which the controller
reads to stop the capture. A recorder restarted after a crash appends to the files it finds,
first cutting off a record it was killed in the middle of writing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mirrorlab.juniper import Copy, parse_copy
from mirrorlab.pcap import (
    DIRECTION_BYTES, EGRESS, GLOBAL_HEADER, INGRESS, PCAP_HEADER, UNKNOWN_DIRECTION, complete_end,
    record_bytes,
)

# What the recorder logs once its socket is bound (its supervisor waits for it).
LISTENING = "recording copies on"
ETH_P_ALL = 0x0003
FLUSH_INTERVAL = 0.05
# A directory whose modification time is this close to when it was last listed may have
# changed again within the file system's timestamp resolution: it is listed again.
RACY_NS = 1_000_000_000
MIB = 1 << 20
DEFAULT_LIMIT_BYTES = 100 * MIB
DEFAULT_MIN_FREE_BYTES = 256 * MIB
# The MPLS traffic class of a copy on its way to the encapsulator says which mirror table made it.
INGRESS_TC = 0
EGRESS_TC = 1
RAW_LIMIT_BYTES = DEFAULT_LIMIT_BYTES
VLAN_TAGGED = b"\x81\x00"
SOL_PACKET, PACKET_AUXDATA = 263, 8
AUXDATA_SPACE = socket.CMSG_SPACE(32)
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
MPLS_OVERLAY = b"\x88\x47"
NIC_HEADERS = 14 + 4 + 4  # Ethernet, 802.1Q tag, one MPLS label


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


WIRE_SUFFIX = ".wire.json"


def with_vlan_tag(frame: bytes, ancillary: list) -> bytes:
    """`frame` with the 802.1Q tag the kernel took off into the socket's auxiliary data put
    back where it was, as tcpdump shows it (a NIC-assisted copy's tag is what says which
    capture it belongs to)."""
    for level, kind, value in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 20:
            status, tci, tpid = struct.unpack_from("I", value)[0], *struct.unpack_from("HH", value, 16)
            if status & TP_STATUS_VLAN_VALID:
                tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


def encapsulation_file(directory: Path, label: int) -> Path:
    """Where the controller says how the copies carrying `label` are wrapped and for which
    analyzer interface (read by the mirror encapsulator and the recorder)."""
    return directory / f"label-{label}{WIRE_SUFFIX}"


def set_encapsulation(directory: Path, label: int, content: dict) -> None:
    """Write the encapsulation of the capture carrying `label` (before its copies flow)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(encapsulation_file(directory, label), content)


def raw_capture_file(directory: Path, interface: str) -> Path:
    """Where the recorder of analyzer interface `interface` writes everything it receives."""
    return directory / f"raw-{interface}.pcap"


class CopyIndex:
    """Which capture a copy belongs to: (outer source address, mirror index) -> label, from the
    encapsulation files for analyzer interface `interface`. New files are read on a miss and at
    every flush; a key taken by several captures (a mirror index used again, which happens only
    after the vRouter's other 254 indexes were) belongs to the newest."""

    def __init__(self, directory: Path, interface: str):
        self.directory = directory
        self.interface = interface
        self.labels: dict[tuple[str, int], tuple[int, int]] = {}  # -> (label, UDP port)
        self.vlans: dict[int, int] = {}  # a NIC-assisted capture's VLAN -> its label
        self.read_files: set[str] = set()
        self.listed: tuple[int, int] | None = None  # (directory's mtime, when) of the last listing

    def label_of(self, copy: Copy) -> int | None:
        """The label of the capture `copy` belongs to, or None if it is none of this analyzer's."""
        found = self.labels.get((copy.ip_src, copy.mirror_index))
        if found is None and self.refresh():
            found = self.labels.get((copy.ip_src, copy.mirror_index))
        if found is None or found[1] != copy.udp_port:
            return None
        return found[0]

    def label_of_vlan(self, vlan: int) -> int | None:
        """The label of the NIC-assisted capture whose VLAN is `vlan`, or None."""
        found = self.vlans.get(vlan)
        if found is None and self.refresh():
            found = self.vlans.get(vlan)
        return found

    def refresh(self) -> bool:
        """Read the encapsulation files not read yet; whether there were any. The directory
        is listed only if it changed since the last listing: it keeps every capture's files,
        and listing tens of thousands of them 20 times a second took a recorder a quarter of
        a core, idle."""
        try:
            modified = os.stat(self.directory).st_mtime_ns
        except OSError:
            modified = None
        if (modified is not None and self.listed is not None and modified == self.listed[0]
                and modified < self.listed[1] - RACY_NS):
            return False
        listed_at, unreadable = time.time_ns(), False
        new = sorted((entry.name for entry in os.scandir(self.directory)
                      if entry.name.startswith("label-") and entry.name.endswith(WIRE_SUFFIX)
                      and entry.name not in self.read_files),
                     key=lambda name: int(name[len("label-"):-len(WIRE_SUFFIX)]))
        for name in new:
            try:
                entry = json.loads((self.directory / name).read_text())
                mine = entry["analyzer_interface"] == self.interface
                if mine and "nic_vlan" in entry:
                    self.vlans[entry["nic_vlan"]] = max(entry["label"], self.vlans.get(entry["nic_vlan"], -1))
                elif mine:
                    key = (entry["ip_src"], entry["mirror_index"])
                    if entry["label"] > self.labels.get(key, (-1, 0))[0]:
                        self.labels[key] = (entry["label"], entry["udp_port"])
            except (OSError, ValueError, KeyError, TypeError):
                unreadable = True  # tried again next time
                continue
            self.read_files.add(name)
        self.listed = None if unreadable or modified is None else (modified, listed_at)
        return bool(new)


@dataclass
class _Output:
    file: BinaryIO
    directions: BinaryIO
    size: int
    limit_bytes: int
    min_free_bytes: int


def _open_pcap_for_append(path: Path) -> tuple[BinaryIO, int, int]:
    """The pcap file at `path` open for appending, its size and its number of records: a new
    file gets the global header; an existing one loses a last record cut short (its writer was
    killed)."""
    records = 0
    if path.exists():
        with open(path, "r+b") as pcap:
            end, records = complete_end(pcap)
            pcap.truncate(end)
    else:
        end = 0
    out = open(path, "ab")
    if end < GLOBAL_HEADER:
        out.write(PCAP_HEADER)
        end = GLOBAL_HEADER
    return out, end, records


def _open_for_append(path: Path, directions_path: Path) -> tuple[BinaryIO, BinaryIO, int]:
    """The pcap file at `path` and its directions file open for appending, and the pcap file's
    size (see `_open_pcap_for_append`); the directions file is made one byte per record again."""
    out, end, records = _open_pcap_for_append(path)
    with open(directions_path, "a+b") as directions:
        directions.seek(0, 2)
        known = directions.tell()
        directions.truncate(min(known, records))
        directions.write(UNKNOWN_DIRECTION * (records - known))
    return out, open(directions_path, "ab"), end


class CaptureFiles:
    """Writes the original frames of captures to their per-label pcap files (and directions)
    within their limits; `flush` pushes them to disk and checks the free disk space. The
    analyzer's recorder uses it, and the mirror encapsulator for header-less copies, which no
    analyzer could tell apart."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.outputs: dict[int, _Output] = {}
        self.stopped: set[int] = set()
        self.dirty = set()

    def record(self, label: int, direction: str, original: bytes, when: float) -> None:
        """Record `original` (its `direction` ingress or egress) in the capture carrying `label`."""
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


class Recorder(CaptureFiles):
    """Writes what analyzer interface `interface` receives: each copy's original frame to its
    capture's file, every frame to the raw capture; flushes them (and checks the free disk
    space) at most every FLUSH_INTERVAL."""

    def __init__(self, directory: Path, interface: str):
        super().__init__(directory)
        self.index = CopyIndex(directory, interface)
        self.raw, self.raw_size, _ = _open_pcap_for_append(raw_capture_file(directory, interface))
        self.raw_full = False

    def write(self, frame: bytes, when: float) -> None:
        """Record one frame received at time `when`."""
        self._write_raw(frame, when)
        if frame[12:14] == VLAN_TAGGED and frame[16:18] == MPLS_OVERLAY and len(frame) > NIC_HEADERS:
            # A NIC-assisted copy: the overlay frame the VM's packet crossed the fabric in,
            # tagged with the capture's VLAN; the original is inside, after one MPLS label.
            label = self.index.label_of_vlan(int.from_bytes(frame[14:16], "big") & 0xFFF)
            if label is not None:
                self.record(label, INGRESS, frame[NIC_HEADERS:], when)
            return
        copy = parse_copy(frame)
        if copy is None:
            return
        label = self.index.label_of(copy)
        if label is not None:
            self.record(label, copy.direction, copy.original, when)

    def _write_raw(self, frame: bytes, when: float) -> None:
        if self.raw_full:
            return
        record = record_bytes(when, frame)
        if self.raw_size + len(record) > RAW_LIMIT_BYTES:
            self.raw_full = True
            print(f"recorder: raw capture full ({RAW_LIMIT_BYTES} bytes); no more frames kept "
                  f"in it", file=sys.stderr, flush=True)
            return
        self.raw.write(record)
        self.raw_size += len(record)

    def flush(self) -> None:
        """Push buffered records to disk, stop every capture whose disk went below its
        free-space floor, and look for new captures."""
        super().flush()
        self.raw.flush()
        self.index.refresh()


def main(argv: list[str] | None = None) -> int:
    """Record copies arriving on --interface into --directory until stopped."""
    parser = argparse.ArgumentParser(prog="python -m mirrorlab.recorder")
    parser.add_argument("--interface", required=True)
    parser.add_argument("--directory", required=True, type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((args.interface, 0))
    sock.settimeout(FLUSH_INTERVAL)
    recorder = Recorder(args.directory, args.interface)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"recorder: {LISTENING} {args.interface} into {args.directory}",
          file=sys.stderr, flush=True)
    last_flush = time.monotonic()
    try:
        while True:
            try:
                frame, ancillary, _flags, address = sock.recvmsg(65535, AUXDATA_SPACE)
                if address[2] != socket.PACKET_OUTGOING:
                    recorder.write(with_vlan_tag(frame, ancillary), time.time())
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
