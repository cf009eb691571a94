"""Reading the analyzers' pcap files while they grow."""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path

GLOBAL_HEADER = 24
RECORD_HEADER = struct.Struct("<IIII")


@dataclass(frozen=True)
class Record:
    """One captured frame: its arrival time (seconds) and bytes."""

    time: float
    data: bytes


class PcapCounter:
    """Packet and byte counts of pcap files, read incrementally: each call reads only the
    records appended since the last one, and stops before a record still being written."""

    def __init__(self):
        self.positions: dict[Path, tuple[int, int, int]] = {}
        self.lock = threading.Lock()

    def count(self, path: Path) -> tuple[int, int]:
        """(packets, bytes) recorded in `path` so far; (0, 0) if it does not exist yet."""
        with self.lock:
            offset, packets, total = self.positions.get(path, (GLOBAL_HEADER, 0, 0))
            try:
                with open(path, "rb") as pcap:
                    pcap.seek(offset)
                    while True:
                        header = pcap.read(RECORD_HEADER.size)
                        if len(header) < RECORD_HEADER.size:
                            break
                        _s, _us, caplen, length = RECORD_HEADER.unpack(header)
                        if len(pcap.read(caplen)) < caplen:
                            break
                        offset += RECORD_HEADER.size + caplen
                        packets += 1
                        total += length
            except FileNotFoundError:
                return 0, 0
            self.positions[path] = (offset, packets, total)
            return packets, total


def read_records(path: Path, skip: int = 0, limit: int | None = None) -> list[Record]:
    """Complete records of `path` after the first `skip`, at most `limit` of them."""
    records: list[Record] = []
    try:
        with open(path, "rb") as pcap:
            pcap.seek(GLOBAL_HEADER)
            index = 0
            while limit is None or len(records) < limit:
                header = pcap.read(RECORD_HEADER.size)
                if len(header) < RECORD_HEADER.size:
                    break
                seconds, micros, caplen, _length = RECORD_HEADER.unpack(header)
                data = pcap.read(caplen)
                if len(data) < caplen:
                    break
                if index >= skip:
                    records.append(Record(seconds + micros / 1e6, data))
                index += 1
    except FileNotFoundError:
        pass
    return records
